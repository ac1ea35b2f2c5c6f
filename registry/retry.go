package registry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
)

// maxRetries bounds the retries of one request, and of one blob's transfer.
const maxRetries = 4

// Attempts is how many times Retry tries a transfer at most.
const Attempts = maxRetries + 1

// retryDelay is how long to wait before retry i+1 (i from 0): 250 ms,
// doubling, at most 4 s, or what a 429 or 503 response's Retry-After asks
// for, up to 10 s. A variable so that tests need not wait.
var retryDelay = func(i int, resp *http.Response) time.Duration {
	if resp != nil {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return min(time.Duration(s)*time.Second, 10*time.Second)
		}
	}
	return min(250*time.Millisecond<<i, 4*time.Second)
}

// replayable reports whether req may be sent again as it is: it has no
// body, or one it can recreate, and is not part of a blob upload. A blob
// upload streams its body through a pipe from the writer; a retry of the
// request would resend it into an upload session the registry already
// wrote part of, so a broken upload is retried whole instead (Retry).
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	if (req.Method == http.MethodPut || req.Method == http.MethodPatch) && strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return false
	}
	return true
}

// retryableResponse reports whether a request's outcome is one a retry may
// change: a connection the network broke, or a registry (or the proxy in
// front of it) that is busy or failing for a moment.
func retryableResponse(resp *http.Response, err error) bool {
	if err != nil {
		return Transient(err)
	}
	return retryableStatus(resp.StatusCode)
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Transient reports whether err is a network failure worth another try: a
// connection reset, closed or timed out in the middle of a transfer. A
// connection refused is not: nothing listens there, and a mirror that
// refuses should give way to the next host at once.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// A connection the peer reset while a request body was still being
	// written: the client closes it on the reset, and the write then fails
	// on the closed connection.
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// Errors that cross the HTTP client keep only their text.
	msg := err.Error()
	for _, s := range []string{"connection reset by peer", "broken pipe", "unexpected EOF", "use of closed network connection", "server closed idle connection", "http2: server sent GOAWAY"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// RetryableTransfer reports whether a blob or manifest transfer that
// failed with err may succeed when started again: the network broke it
// (Transient), the registry failed for a moment (a 5xx, 408 or 429), or
// the upload session a broken request left behind was refused (a blob
// upload unknown, invalid, or its digest wrong because part of it came
// twice), which a new session does not inherit.
func RetryableTransfer(err error) bool {
	if Transient(err) {
		return true
	}
	var status remoteerrors.ErrUnexpectedStatus
	if !errors.As(err, &status) {
		return false
	}
	if retryableStatus(status.StatusCode) {
		return true
	}
	if strings.Contains(status.RequestURL, "/blobs/uploads/") {
		body := string(status.Body)
		return strings.Contains(body, "BLOB_UPLOAD_UNKNOWN") || strings.Contains(body, "BLOB_UPLOAD_INVALID") ||
			strings.Contains(body, "DIGEST_INVALID") || status.StatusCode == http.StatusRequestedRangeNotSatisfiable
	}
	return false
}

// Retry runs transfer until it succeeds, fails with an error
// RetryableTransfer does not accept, or has failed 1+maxRetries times,
// waiting longer after each failure. retrying, when set, is told of each
// failure before the next attempt.
func Retry(ctx context.Context, transfer func() error, retrying func(attempt int, err error)) error {
	for i := 0; ; i++ {
		err := transfer()
		if err == nil || i >= maxRetries || !RetryableTransfer(err) || ctx.Err() != nil {
			return err
		}
		if retrying != nil {
			retrying(i+1, err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryDelay(i, nil)):
		}
	}
}

// Brief is the part of a transfer's error that says what happened, for a
// progress line: the network operation that failed, or the registry's
// status, without the long URL of an upload session.
func Brief(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var status remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		return status.Status
	}
	return lastCause(flatten(err.Error()))
}
