package consume

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// TestWarmHandlers: a call returns the handler's messages and error; calls
// in turn reuse one worker, concurrent calls each get one.
func TestWarmHandlers(t *testing.T) {
	t.Parallel()
	w := newWarmHandlers()
	defer w.close()
	boom := errors.New("boom")
	h := w.middleware(func(msg *message.Message) ([]*message.Message, error) {
		if string(msg.Payload) == "fail" {
			return nil, boom
		}
		return []*message.Message{msg}, nil
	})
	msg := message.NewMessage("1", []byte("ok"))
	out, err := h(msg)
	require.NoError(t, err)
	require.Equal(t, []*message.Message{msg}, out)
	_, err = h(message.NewMessage("2", []byte("fail")))
	require.ErrorIs(t, err, boom)

	// Two calls at once: the first holds its worker until the second ran
	// on another.
	release, first := make(chan struct{}), make(chan error, 1)
	block := w.middleware(func(*message.Message) ([]*message.Message, error) { <-release; return nil, nil })
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := block(msg)
		first <- err
	}()
	<-started
	_, err = h(message.NewMessage("3", []byte("ok")))
	require.NoError(t, err, "runs while the other call holds a worker")
	close(release)
	require.NoError(t, <-first)
}
