package main

import (
	"io"
	"log"
	"os"

	"github.com/go-logr/logr"
	"github.com/go-logr/stdr"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"
)

// libraryLogs routes the logs of the libraries kiln embeds: to standard
// error with --debug, nowhere otherwise. kiln says what went wrong in its
// own one-line errors; a library's log line before it (grpc-go logs every
// status it fails to send, 8 KB of it for a Dockerfile with invalid UTF-8)
// only buries that. BuildKit and containerd log through logrus, gRPC
// through grpclog, OpenTelemetry through its own logr logger, others
// through the standard log package. main calls it before anything runs,
// setup again once --debug is known; gRPC's logger must be set before gRPC
// is used, which both are.
func libraryLogs(debug bool) {
	var w io.Writer = io.Discard
	if debug {
		w = os.Stderr
	}
	logrus.SetOutput(w)
	logrus.SetLevel(logrus.ErrorLevel)
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(w, w, w))
	log.SetOutput(w)
	otelLogger := logr.Discard()
	if debug {
		otelLogger = stdr.New(log.New(os.Stderr, "", log.LstdFlags))
	}
	otel.SetLogger(otelLogger)
}
