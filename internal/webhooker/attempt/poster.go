package attempt

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/eventline/eventline/internal/safehttp"
)

// HTTPPoster delivers through the SSRF-safe client.
type HTTPPoster struct{ Client *safehttp.Client }

// Post sends one delivery request.
func (p HTTPPoster) Post(ctx context.Context, url string, header http.Header, body []byte) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Response{}, fmt.Errorf("build request: %w", err)
	}
	req.Header = header
	res, err := p.Client.Do(ctx, req)
	return Response{StatusCode: res.StatusCode, Header: res.Header, Body: res.Body}, err
}

// ErrorClass names a failed attempt.
func (p HTTPPoster) ErrorClass(err error, statusCode int) string {
	return string(safehttp.Classify(err, statusCode))
}
