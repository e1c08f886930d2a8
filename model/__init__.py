"""instabnn.model"""
