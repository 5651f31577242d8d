# The two commands a user needs:
#   make run    installs what is missing, builds, starts the server
#   make test   installs what is missing, builds, runs the whole suite
GO      ?= go
DATA    ?= .lambdaplane
LISTEN  ?= 127.0.0.1:9009
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build setup run test vet fmt bench clean
all: build

setup:
	@bash scripts/setup.sh

build:
	$(GO) build -o bin/lambdaplane ./cmd/lambdaplane
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o bin/lambdaplane-init ./cmd/lambdaplane-init

run: setup build
	./bin/lambdaplane serve --listen $(LISTEN) --data $(DATA)

vet:
	$(GO) vet ./...

# -p 3: the end-to-end packages mostly wait on their servers and the kernel;
# three at once keep two cores busy.
test: setup build vet
	$(GO) test -count=1 -p 3 -timeout 25m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
