package events

import "fmt"

// StreamName is the JetStream stream that holds every event.
const StreamName = "EVENTS"

// SubjectPrefix is the first token of every event subject; the stream
// listens on "events.>".
const SubjectPrefix = "events"

// Subject returns the subject an event is stored under:
// events.<tenant>.<eventable type>.<action>. Each token is checked against
// the contract's token rules, so no '.', '*', '>', whitespace or empty token
// can ever reach a subject; an invalid token is an error.
func Subject(tenant, eventableType, action string) (string, error) {
	if !IsTenant(tenant) {
		return "", fmt.Errorf("subject: tenant %q is not a valid token", tenant)
	}
	if !IsName(eventableType) {
		return "", fmt.Errorf("subject: eventable type %q is not a valid token", eventableType)
	}
	if !IsName(action) {
		return "", fmt.Errorf("subject: action %q is not a valid token", action)
	}
	return SubjectPrefix + "." + tenant + "." + eventableType + "." + action, nil
}

// TenantSubjects returns the filter subject matching every event of tenant,
// for consumers and subject mappings.
func TenantSubjects(tenant string) (string, error) {
	if !IsTenant(tenant) {
		return "", fmt.Errorf("subject: tenant %q is not a valid token", tenant)
	}
	return SubjectPrefix + "." + tenant + ".>", nil
}

// MsgID returns the Nats-Msg-Id under which an event is de-duplicated by
// the stream: "<tenant>:<id>". The tenant is part of it so that two tenants
// choosing the same event id never collide.
func MsgID(tenant, id string) string { return tenant + ":" + id }
