package natsedge

import "strconv"

// ConsumerSlots is how many named consumers one edge name may hold on the
// edge stream at once: replicas sharing a credential take different slots.
const ConsumerSlots = 8

// maxEdgeName bounds an edge name (it appears in subjects and consumer names).
const maxEdgeName = 64

// ValidEdgeName reports whether name can name an edge: 1 to 64 letters,
// digits, '-' and '_' (no '.', '*' or '>', so an edge's subjects never
// overlap another edge's).
func ValidEdgeName(name string) bool { return plainName(name, maxEdgeName) }

// plainName reports whether name is 1 to limit letters, digits, '_' and '-':
// the alphabet of bucket and edge names, which never holds a subject's
// separator or wildcards.
func plainName(name string, limit int) bool {
	if name == "" || len(name) > limit {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// InboxPrefix is the subject prefix of an edge's inbox: JetStream API replies
// and its consumers' deliveries arrive under InboxPrefix(edge) + ".>", which
// only that edge's credential may subscribe to.
func InboxPrefix(edge string) string { return "_EDGEPASS." + edge }

// ConsumerName is the name of an edge's consumer in slot (0 to
// ConsumerSlots-1) on the edge stream.
func ConsumerName(edge string, slot int) string {
	return "edge_" + edge + "_" + strconv.Itoa(slot)
}

// HeartbeatSubject is where the edge named edge reports its sync state for
// bucket; the daemon takes the edge name from the subject.
func HeartbeatSubject(bucket, edge string) string {
	return "edgepass.heartbeat." + bucket + "." + edge
}

// HeartbeatWildcard matches every edge's heartbeat subject for bucket.
func HeartbeatWildcard(bucket string) string {
	return "edgepass.heartbeat." + bucket + ".*"
}

// AssertionSubject is where the edge named edge asks the daemon to mint
// identity assertions (package mint; requests sealed to the daemon, replies
// to the edge's inbox); the daemon takes the edge name from the subject.
func AssertionSubject(bucket, edge string) string {
	return "edgepass.assert." + bucket + "." + edge
}

// AssertionWildcard matches every edge's assertion subject for bucket.
func AssertionWildcard(bucket string) string {
	return "edgepass.assert." + bucket + ".*"
}

// streamName is the JetStream stream behind KV bucket bucket.
func streamName(bucket string) string { return "KV_" + bucket }

// streamInfoSubject is the JetStream API subject of stream's INFO.
func streamInfoSubject(stream string) string { return "$JS.API.STREAM.INFO." + stream }

// consumerCreateSubject is the JetStream API subject that creates the
// consumer named name on stream.
func consumerCreateSubject(stream, name string) string {
	return "$JS.API.CONSUMER.CREATE." + stream + "." + name
}

// consumerDeleteSubject is the JetStream API subject that deletes the
// consumer named name on stream.
func consumerDeleteSubject(stream, name string) string {
	return "$JS.API.CONSUMER.DELETE." + stream + "." + name
}

// EdgePermissions is everything the NATS credential of the edge named edge
// needs on bucket, and all it may have (docs/contracts.md, "NATS: who may do
// what"): the stream's INFO, direct gets on the stream (the bucket's facts
// are public to edges; they follow the stream that way while they have no
// consumer), create and delete of its own named consumers, their
// flow-control replies, its heartbeat subject and its assertion subject;
// subscribe on its own inbox only. No _INBOX.>, no consumer INFO/LIST/NAMES,
// no ephemeral creates, no other stream (the key and session buckets in
// particular), no $KV publishes, no direct gets by subject.
func EdgePermissions(bucket, edge string) (publish, subscribe []string) {
	stream := streamName(bucket)
	publish = append(publish, streamInfoSubject(stream))
	publish = append(publish, directSubject(stream))
	for n := 0; n < ConsumerSlots; n++ {
		publish = append(publish, consumerCreateSubject(stream, ConsumerName(edge, n)))
	}
	for n := 0; n < ConsumerSlots; n++ {
		publish = append(publish, consumerDeleteSubject(stream, ConsumerName(edge, n)))
	}
	for n := 0; n < ConsumerSlots; n++ {
		publish = append(publish, "$JS.FC."+stream+"."+ConsumerName(edge, n)+".*")
	}
	publish = append(publish, HeartbeatSubject(bucket, edge))
	publish = append(publish, AssertionSubject(bucket, edge))
	subscribe = []string{InboxPrefix(edge) + ".>"}
	return publish, subscribe
}
