// Package cluster is lambdaplane's membership: which hosts form the
// cluster, which of them are alive, which one leads, and where a key is
// homed. It is pure (NATS only, no kernel code).
//
// Every host writes a record (Host: id, epoch, API address, underlay
// address, its slice of the service CIDR, capacity) into the replicated
// bucket cluster_hosts when it joins, raising its epoch by one each time
// it starts. Liveness is not a store write: every host publishes a
// heartbeat (id, epoch) as a plain NATS message every 500 ms on
// lp.cluster.hb, and a host not heard from for 3 s is dead. A heartbeat
// or record carrying an older epoch than the newest record of that host
// is stale and ignored (fencing): a host that finds a newer epoch of its
// own id than its own has been replaced and calls itself fenced.
//
// One leader does janitor work: it holds the key "leader" of the bucket
// cluster_leader, whose entries expire after LeaderTTL (3 s) unless the
// holder refreshes them (revision-checked, every second). When the holder
// dies the key lapses and another host creates it.
//
// Placement is rendezvous hashing over the live hosts: Home(key) is the
// live host with the highest hash of (key, host id), and Ranked(key) the
// whole order (the next one takes over, or takes spill, when the first is
// dead or full). Every host computes the same answer from the same live
// set, and a host that dies moves only its own keys.
//
// The API others use:
//
//	m, _ := cluster.Join(ctx, cluster.Options{...})
//	m.Self()            // this host's record
//	m.Live()            // live hosts (sorted by id), this one included
//	m.Hosts()           // every known host with alive / leader flags
//	m.IsLeader()        // whether this host holds the leader key
//	m.Leader()          // the current leader's id ("" while none)
//	m.Alive(id)         // whether a host is alive
//	m.Quorate()         // this host sees a majority of the known hosts
//	m.Home(key)         // rendezvous home of key among live hosts
//	m.Ranked(key)       // every live host, best first
//	ch, stop := m.Subscribe() // a tick on every change of live set or leader
//
// A single host (no cluster) uses the same API: it is alone, alive,
// leader and home of every key.
//
// Lease (lease.go) gives each host a slice of the cluster-wide service
// CIDR, recorded in the bucket cluster_slices.
package cluster
