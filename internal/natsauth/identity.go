// Package natsauth is the one definition of who may do what on NATS in an
// eventline installation: the accounts, the static identities of the
// services and the operator, the permission template of tenant producers,
// and their renderings as a nats-server configuration (the files under
// deploy/, the Helm values, the test harness's server process) and as
// server.Options for the embedded server (`eventline dev`, the tests).
//
// Accounts:
//
//   - EVENTLINE holds the EVENTS stream (JetStream) and the static users
//     admin, ingest, projector, notifier and webhooker.
//   - TENANTS is where tenant producers land (the auth callout assigns them
//     there). It has no JetStream; it reaches the stream through a service
//     import of events.> from EVENTLINE. Going through a service import
//     means the server replaces a producer's reply subject with one of its
//     own: in the same account a producer could name another tenant's
//     subject as its reply, and the stream would store its PubAck there.
//   - AUTH holds the auth callout's responder (user auth), when the callout
//     is configured.
//   - SYS is the system account; user sys there may list and kick
//     connections (the callout's revocation sweep).
//
// Permissions are allow-lists derived from the subjects the code sends
// (nats.go jetstream and watermill-nats): anything not listed is refused by
// the server. Every service uses an inbox prefix of its own,
// _INBOX_<service>, and may subscribe to nothing else.
package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/eventline/eventline/internal/stream"
)

// Accounts.
const (
	AccountEventline = "EVENTLINE"
	AccountTenants   = "TENANTS"
	AccountAuth      = "AUTH"
	AccountSystem    = "SYS"
)

// Identities.
const (
	Admin     = "admin"
	Ingest    = "ingest"
	Projector = "projector"
	Notifier  = "notifier"
	Webhooker = "webhooker"
	// Auth answers auth callout requests (exists with the callout only).
	Auth = "auth"
	// Sys lists and kicks connections in the system account (exists with
	// the callout only: it sweeps producers whose key was revoked).
	Sys = "sys"
)

// Durable consumer names the services' permissions are written for (the
// services' defaults; a test checks they agree).
const (
	ProjectorDurable = "projector"
	NotifierDurable  = "notifier"
	WebhookerDurable = "webhooker"
)

// Stream is the stream every permission refers to (events.StreamName).
const Stream = "EVENTS"

// Action is what a grant allows on a subject.
type Action string

// Actions.
const (
	Publish   Action = "publish"
	Subscribe Action = "subscribe"
)

// Grant allows one action on one subject (wildcards allowed) and says why
// the identity needs it.
type Grant struct {
	Action  Action
	Subject string
	Why     string
}

// Identity is a NATS user and everything it may do.
type Identity struct {
	Name    string
	Account string
	// Role says what the identity is for.
	Role   string
	Grants []Grant
	// Responses lets the identity publish one reply to each request it
	// received (allow_responses), whatever the reply subject: the auth
	// callout responder answers the server this way.
	Responses bool
	// Callout marks identities that exist only when the auth callout is
	// configured.
	Callout bool
}

// Allowed returns the subjects the identity may publish to or subscribe
// to.
func (id Identity) Allowed(a Action) []string {
	var out []string
	for _, g := range id.Grants {
		if g.Action == a {
			out = append(out, g.Subject)
		}
	}
	return out
}

// Identities returns every static identity, in a fixed order.
func Identities() []Identity {
	return []Identity{admin(), ingest(), consumer(Projector, ProjectorDurable, "projects the stream into Postgres timelines"),
		notifier(), webhooker(), auth(), sys()}
}

// Lookup returns the identity called name.
func Lookup(name string) (Identity, error) {
	i := slices.IndexFunc(Identities(), func(id Identity) bool { return id.Name == name })
	if i < 0 {
		return Identity{}, fmt.Errorf("no NATS identity %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return Identities()[i], nil
}

// Names lists the identities' names.
func Names() []string {
	var out []string
	for _, id := range Identities() {
		out = append(out, id.Name)
	}
	return out
}

func inbox(service string) Grant {
	return Grant{Subscribe, stream.InboxPrefix(service) + ".>", "replies to its own requests: PubAcks, API responses, pulled messages (its inbox prefix, no other)"}
}

func admin() Identity {
	return Identity{Name: Admin, Account: AccountEventline,
		Role: "provisioning and operations: eventline migrate creates and updates the stream and every durable, eventline rebuild runs its own durables",
		Grants: []Grant{
			{Publish, "$JS.API.>", "the whole JetStream API of the account: create and update the stream and durables, create and delete rebuild durables, pull from them, inspect"},
			{Publish, "$JS.ACK." + Stream + ".>", "eventline rebuild acknowledges what its workers projected from its projector-rebuild-g<N> durable"},
			{Publish, "$JS.ACK.*.*." + Stream + ".>", "the same in the v2 ack format ($JS.ACK.<domain>.<account hash>.EVENTS...), which the server's js_ack_fc_v2 feature flag turns on"},
			{Publish, "events.>", "appends events by hand (operators); it may delete the stream anyway"},
			{Subscribe, "$JS.EVENT.>", "watches JetStream advisories and metrics (stream updated, consumer created, max deliveries reached)"},
			inbox(Admin),
		}}
}

func ingest() Identity {
	return Identity{Name: Ingest, Account: AccountEventline, Role: "appends the events producers send over HTTP",
		Grants: []Grant{
			{Publish, "events.>", "appends events of every tenant: single publishes, and atomic batches whose last message (the commit) carries the reply"},
			{Publish, "$JS.API.STREAM.INFO." + Stream, "start-up and /readyz: the stream exists and allows atomic publish"},
			{Publish, "$JS.API.DIRECT.GET." + Stream, "reads the message behind a duplicate the stream reports, to check it is the tenant's own (a producer may set any Nats-Msg-Id)"},
			inbox(Ingest),
		}}
}

// consumerGrants are what a service reading the stream through its own
// durable needs.
func consumerGrants(service, durable string) []Grant {
	return []Grant{
		{Publish, "$JS.API.STREAM.INFO." + Stream, "start-up and /readyz: the stream exists; lag: the stream's head"},
		{Publish, "$JS.API.CONSUMER.INFO." + Stream + "." + durable, "start-up and /readyz: its durable exists (and its max_deliver, max_waiting); lag: num_pending, ack floor"},
		{Publish, "$JS.API.CONSUMER.MSG.NEXT." + Stream + "." + durable, "pulls messages from its own durable"},
		{Publish, "$JS.ACK." + Stream + "." + durable + ".>", "acks, naks (with delay) and terms the messages of its own durable"},
		{Publish, "$JS.ACK.*.*." + Stream + "." + durable + ".>", "the same in the v2 ack format ($JS.ACK.<domain>.<account hash>.EVENTS...), which the server's js_ack_fc_v2 feature flag turns on"},
		{Publish, "$JS.API.DIRECT.GET." + Stream, "reads a message by sequence: the lag monitor's oldest unacknowledged message"},
		inbox(service),
	}
}

func consumer(name, durable, role string) Identity {
	return Identity{Name: name, Account: AccountEventline, Role: role + " through its durable " + durable, Grants: consumerGrants(name, durable)}
}

func notifier() Identity {
	id := consumer(Notifier, NotifierDurable, "turns events into notifications, in stream order")
	id.Grants = append(id.Grants,
		Grant{Publish, "$JS.API.CONSUMER.UNPIN." + Stream + "." + NotifierDurable, "gives up the durable's pin at a clean stop, so a standby replica takes over at once"})
	for i, g := range id.Grants {
		if g.Subject == "$JS.API.DIRECT.GET."+Stream {
			id.Grants[i].Why += "; reads a message missing from its deliveries (held by a replica that stopped) to keep the stream order"
		}
	}
	return id
}

func webhooker() Identity {
	id := consumer(Webhooker, WebhookerDurable, "fans events out to webhook endpoints")
	id.Grants = append(id.Grants,
		Grant{Publish, "events.*.webhook.disabled", "records webhook.disabled when it disables an endpoint (creator system), in that endpoint's tenant"},
		Grant{Publish, "events.*.webhook.test", "records webhook.test when an admin tests an endpoint from the API or the portal, in that endpoint's tenant"},
		Grant{Publish, "events.*.webhook.attempt_failing", "records webhook.attempt_failing when an endpoint's deliveries keep failing (creator system), in that endpoint's tenant"},
		Grant{Publish, "events.*.webhook.attempt_exhausted", "records webhook.attempt_exhausted when a delivery ran out of retries (creator system), in that endpoint's tenant"},
		Grant{Publish, "events.*.webhook.recovered", "records webhook.recovered when a failing endpoint succeeds again (creator system), in that endpoint's tenant"})
	for i, g := range id.Grants {
		if g.Subject == "$JS.API.DIRECT.GET."+Stream {
			id.Grants[i].Why += "; retries load their event by sequence; replays read a tenant's events by time"
		}
	}
	return id
}

func auth() Identity {
	return Identity{Name: Auth, Account: AccountAuth, Callout: true, Responses: true,
		Role: "the auth callout responder: authenticates tenant producers by eventline API key and places them in " + AccountTenants,
		Grants: []Grant{
			{Subscribe, "$SYS.REQ.USER.AUTH", "receives the server's authorization requests (its answer goes to their reply subject: allow_responses)"},
			inbox(Auth),
		}}
}

func sys() Identity {
	return Identity{Name: Sys, Account: AccountSystem, Callout: true,
		Role: "the callout's revocation sweep: lists tenant producers' connections and disconnects those whose key was revoked",
		Grants: []Grant{
			{Publish, "$SYS.REQ.SERVER.PING.CONNZ", "lists connections on every server (filtered to account " + AccountTenants + ")"},
			{Publish, "$SYS.REQ.SERVER.*.KICK", "disconnects one connection on the server holding it"},
			inbox(Sys),
		}}
}

// TenantGrants are what a tenant producer may do: publish its own events
// and receive the PubAcks, which come to its inbox prefix _INBOX.<tenant>
// (the producer must set it). The auth callout gives them to every
// producer it authenticates, in account TENANTS. A tenant that is not one
// subject token (empty, or with '.', '*', '>' or white space) is refused.
func TenantGrants(tenant string) ([]Grant, error) {
	if tenant == "" || strings.ContainsAny(tenant, ".*> \t\r\n") {
		return nil, fmt.Errorf("tenant %q is not a single subject token", tenant)
	}
	return []Grant{
		{Publish, "events." + tenant + ".>", "appends its own tenant's events"},
		{Subscribe, TenantInboxPrefix(tenant) + ".>", "its PubAcks"},
	}, nil
}

// TenantInboxPrefix is the inbox prefix a tenant producer must use.
func TenantInboxPrefix(tenant string) string { return "_INBOX." + tenant }
