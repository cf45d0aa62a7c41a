package cli

import (
	"fmt"
	"io"

	"github.com/nats-io/nkeys"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/natsauth"
)

// natsCmd prints eventline's NATS accounts, identities and permissions
// (internal/natsauth) for a server: deploy/nats/auth.conf and the Helm
// values are this output.
func natsCmd(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "callout-keys" {
		return calloutKeys(args[1:], stdout)
	}
	if len(args) == 0 || args[0] != "config" {
		return usageError{"nats: say config or callout-keys"}
	}
	var helm bool
	var issuer string
	set := config.New("eventline nats config")
	set.Bool(&helm, "helm", "EVENTLINE_NATS_HELM", false, "print YAML for the NATS Helm chart's config.merge instead")
	set.String(&issuer, "callout-issuer", "NATS_CALLOUT_ISSUER", "", "public account nkey (A...) that signs the auth callout's answers; empty: no callout")
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	var c natsauth.Config
	if issuer != "" {
		if !nkeys.IsValidPublicAccountKey(issuer) {
			return usageError{"nats config: --callout-issuer must be a public account key (A...), as `eventline nats callout-keys` prints"}
		}
		c.Callout = &natsauth.Callout{Issuer: issuer}
	}
	if !helm {
		_, err := io.WriteString(stdout, c.Conf())
		return err
	}
	out, err := c.Helm()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s", out)
	return err
}

// calloutKeys makes the key pair of the auth callout: the seed signs the
// callout's answers (ingest), the public key goes into the server's
// configuration.
func calloutKeys(args []string, stdout io.Writer) error {
	set := config.New("eventline nats callout-keys")
	if err := parse(set, args); err != nil {
		return err
	}
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	public, err := kp.PublicKey()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, `# The NATS auth callout's key pair (docs/publishing-from-any-language.md).
# The seed is a secret: give it to every ingest replica as NATS_CALLOUT_ISSUER_SEED.
# The public key goes into the server's configuration:
#   eventline nats config --callout-issuer %s
NATS_CALLOUT_ISSUER_SEED=%s
NATS_CALLOUT_ISSUER=%s
`, public, seed, public)
	return err
}
