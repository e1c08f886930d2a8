"""instabnn.hw"""
