"""instabnn.sim"""
