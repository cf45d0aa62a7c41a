# syntax=docker/dockerfile:1
# Every eventline binary (ingest, projector, notifier, webhooker, eventline)
# in one small image; docker-compose.yml and deploy/ pick the binary with
# `command`. Build: docker build -t eventline .

FROM golang:1.26-alpine AS build
WORKDIR /src
# Modules first, so source changes reuse the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/...

# Alpine rather than distroless: its busybox wget lets docker-compose
# healthchecks probe /readyz; it also carries the CA roots webhook
# deliveries over HTTPS need.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata && \
    addgroup -S -g 10001 eventline && adduser -S -u 10001 -G eventline -H -s /sbin/nologin eventline
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# Public APIs 8080-8083, admin (/livez, /readyz, /metrics) 9090-9093.
EXPOSE 8080 8081 8082 8083 9090 9091 9092 9093
CMD ["eventline", "help"]
