return clock()
