package testenv

// SecretKey is an EVENTLINE_SECRET_KEY for tests (base64 of 32 bytes): the
// webhooker refuses to start without one.
const SecretKey = "bXkgdGVzdCBrZXkgaXMgMzIgYnl0ZXMgbG9uZyEhISE="
