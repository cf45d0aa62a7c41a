package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/config"
)

// Not parallel: t.Setenv.
func TestPrecedenceFlagOverEnvOverDefault(t *testing.T) {
	t.Setenv("EL_TEST_A", "from-env")
	t.Setenv("EL_TEST_B", "from-env")
	t.Setenv("EL_TEST_D", "250ms")
	var a, b, c string
	var d time.Duration
	set := config.New("test")
	set.String(&a, "a", "EL_TEST_A", "def", "")
	set.String(&b, "b", "EL_TEST_B", "def", "")
	set.String(&c, "c", "EL_TEST_C", "def", "")
	set.Duration(&d, "d", "EL_TEST_D", time.Second, "")
	require.NoError(t, set.Parse([]string{"-b", "from-flag"}))
	require.Equal(t, "from-env", a)
	require.Equal(t, "from-flag", b)
	require.Equal(t, "def", c)
	require.Equal(t, 250*time.Millisecond, d)
}

func TestBadEnvNamesTheVariable(t *testing.T) {
	t.Setenv("EL_TEST_N", "many")
	var n int
	set := config.New("test")
	set.Int(&n, "n", "EL_TEST_N", 1, "")
	err := set.Parse(nil)
	require.ErrorContains(t, err, "EL_TEST_N")
}
