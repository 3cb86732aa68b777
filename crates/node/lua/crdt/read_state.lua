#!lua flags=no-writes
return {redis.call('HGET', KEYS[2], KEYS[1]), redis.call('HGETALL', KEYS[3])}
