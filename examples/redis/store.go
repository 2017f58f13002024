package main

import (
	"hash/maphash"
	"sync"
	"time"
)

// store is the keyspace: shards, each a map under its own lock, so the
// event loops rarely wait on one another. Keys with a time to live are
// also listed per shard, for the tick's active expiry; GET expires
// lazily as well, so a key is never seen after its deadline whatever the
// tick's pace.
type store struct {
	seed   maphash.Seed
	shards [numShards]shard
}

const (
	numShards = 32
	// expireBudget bounds the keys one tick examines per shard, so a tick
	// never holds a loop for long; random map order spreads the work.
	expireBudget = 256
)

type shard struct {
	mu       sync.Mutex
	keys     map[string]entry
	expiring map[string]struct{}
}

type entry struct {
	val      []byte
	deadline int64 // unix nanoseconds; 0 = none
}

func newStore() *store {
	s := &store{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].keys = make(map[string]entry)
		s.shards[i].expiring = make(map[string]struct{})
	}
	return s
}

func (s *store) shard(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)%numShards]
}

// get appends key's value to dst; ok is false when there is none.
func (s *store) get(dst, key []byte, now int64) (out []byte, ok bool) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[string(key)]
	if !ok {
		return dst, false
	}
	if e.deadline != 0 && e.deadline <= now {
		delete(sh.keys, string(key))
		delete(sh.expiring, string(key))
		return dst, false
	}
	return appendBulk(dst, e.val), true
}

// set stores a copy of val; ttl 0 means no expiry.
func (s *store) set(key, val []byte, ttl time.Duration, now int64) {
	e := entry{val: append([]byte(nil), val...)}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := string(key)
	if ttl > 0 {
		e.deadline = now + int64(ttl)
		sh.expiring[k] = struct{}{}
	} else {
		delete(sh.expiring, k)
	}
	sh.keys[k] = e
}

// del removes key and reports whether it was there (and alive).
func (s *store) del(key []byte, now int64) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[string(key)]
	if !ok {
		return false
	}
	delete(sh.keys, string(key))
	delete(sh.expiring, string(key))
	return e.deadline == 0 || e.deadline > now
}

// size counts the keys held, expired ones the tick has not reached yet
// included, as Redis's DBSIZE does.
func (s *store) size() int64 {
	var n int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += int64(len(sh.keys))
		sh.mu.Unlock()
	}
	return n
}

// expire deletes keys past their deadline, at most expireBudget examined
// per shard, and returns how many it deleted.
func (s *store) expire(now int64) int {
	deleted := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		seen := 0
		for k := range sh.expiring {
			if seen++; seen > expireBudget {
				break
			}
			if e := sh.keys[k]; e.deadline <= now {
				delete(sh.keys, k)
				delete(sh.expiring, k)
				deleted++
			}
		}
		sh.mu.Unlock()
	}
	return deleted
}
