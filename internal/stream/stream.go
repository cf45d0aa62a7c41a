// Package stream connects eventline binaries to NATS (credentials, TLS,
// each service's inbox prefix) and owns the EVENTS stream: its shape (file
// storage, deny delete and purge, a duplicate window, atomic batch publish,
// direct get), its provisioning under the NATS admin identity (Ensure, run
// by `eventline migrate`), and the services' checks that it and their
// durables exist.
package stream

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/pkg/events"
)

// Config is the shape of the EVENTS stream.
type Config struct {
	// Replicas is 1 in development and 3 in production. Default 1.
	Replicas int
	// Duplicates is the window within which a re-sent event id is
	// recognised by the stream itself. Default 2 minutes.
	Duplicates time.Duration
	// MaxAge drops events older than this; 0 keeps them forever (default).
	MaxAge time.Duration
	// MaxBytes caps the stream's size; 0 is unlimited (default). When full,
	// appends are refused (503), never old events silently dropped.
	MaxBytes int64
}

// Register binds the settings to flags and environment variables.
func (c *Config) Register(s *config.Set) {
	s.Int(&c.Replicas, "stream-replicas", "STREAM_REPLICAS", 1, "replicas of the EVENTS stream (3 in production)")
	s.Duration(&c.Duplicates, "stream-duplicate-window", "STREAM_DUPLICATE_WINDOW", 2*time.Minute, "window in which the stream de-duplicates re-sent event ids")
}

func (c Config) streamConfig() jetstream.StreamConfig {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	maxBytes := c.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:               events.StreamName,
		Description:        "eventline activity events: events.<tenant>.<eventable_type>.<action>",
		Subjects:           []string{events.SubjectPrefix + ".>"},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxAge:             c.MaxAge,
		MaxBytes:           maxBytes,
		MaxMsgs:            -1,
		MaxMsgsPerSubject:  -1,
		Duplicates:         c.Duplicates,
		Replicas:           c.Replicas,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowAtomicPublish: true,
		AllowDirect:        true,
	}
}

// Ensure creates the EVENTS stream or updates it to cfg. It fails with a
// message naming the version found and the version needed when the server
// is older than events.MinServerVersion.
func Ensure(ctx context.Context, nc *nats.Conn, cfg Config) (jetstream.Stream, error) {
	if err := events.CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	want := cfg.streamConfig()
	// Update only what differs: an update that changes nothing still
	// rewrites the stream's store config, which races, inside nats-server
	// 2.15.2 (seen by the race detector when every service still ensured
	// the stream as it started), with a consumer being created on the same
	// stream.
	if s, err := js.Stream(ctx, events.StreamName); err == nil && sameConfig(s.CachedInfo().Config, want) {
		return s, nil
	}
	s, err := js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", events.StreamName, err)
	}
	return s, nil
}

// sameConfig tells whether the stream already has every setting Ensure
// makes (the server fills in others).
func sameConfig(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) && have.Storage == want.Storage &&
		have.Retention == want.Retention && have.Discard == want.Discard && have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes &&
		have.MaxMsgs == want.MaxMsgs && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject && have.Duplicates == want.Duplicates &&
		have.Replicas == want.Replicas && have.DenyDelete == want.DenyDelete && have.DenyPurge == want.DenyPurge &&
		have.AllowAtomicPublish == want.AllowAtomicPublish && have.AllowDirect == want.AllowDirect
}
