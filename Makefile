# keyrot build, deployment and release. `make help` lists the targets.
#
#   make build                        the CLI and daemon into build/keyrot
#   make lambda [ARCH=arm64|x86_64]   the two Lambda bootstraps (rotation, API) and their zips
#   make package BUCKET=my-artifacts  upload the zips, write build/key_rotation.yaml
#   make release [VERSION=v1.2.3]     keyrot for linux and darwin (amd64, arm64), the Lambda zips, SHA256SUMS
#   make release-verify               build the release again from an empty build cache and compare
#   make lint-templates               cfn-lint on the CloudFormation templates (CI runs it)
#
# After `make package`, deploy the packaged template it wrote:
#   aws cloudformation deploy --template-file build/key_rotation.yaml \
#     --stack-name iam-key-rotation \
#     --parameter-overrides SenderEmail=... AdminEmail=... \
#     --capabilities CAPABILITY_IAM
# (with ARCH=x86_64, add Architecture=x86_64 to the overrides).

GO          ?= go
ARCH        ?= arm64
BUCKET      ?=
PREFIX      ?= keyrot
# The version `keyrot version` prints: the git tag (or commit) by default.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD       := build
RELEASE_DIR ?= $(BUILD)/release

# Reproducible: static (no cgo), no path of this machine (-trimpath), no
# build id; the same source and toolchain give the same bytes.
BUILDFLAGS  := -trimpath
LDFLAGS     := -s -w -buildid= -X github.com/keyrot/keyrot/internal/buildinfo.version=$(VERSION) \
               -X github.com/keyrot/keyrot/internal/buildinfo.commit=$(COMMIT)

# Lambda names the instruction set x86_64, Go names it amd64.
GOARCH_arm64  := arm64
GOARCH_x86_64 := amd64
LAMBDA_GOARCH := $(GOARCH_$(ARCH))

.PHONY: help build lambda package release release-verify lint-templates clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

build:
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(BUILD)/keyrot ./cmd/keyrot

# $(call lambda-zip,COMMAND,GOARCH,ZIP): the Lambda function in cmd/COMMAND
# as a static, stripped binary named bootstrap for the provided.al2023
# runtime, zipped as ZIP. lambda.norpc leaves out aws-lambda-go's legacy
# go1.x RPC server. The zip is built with a fixed timestamp so that the
# same code gives the same zip (and the same S3 key).
define lambda-zip
	@mkdir -p $(BUILD)/lambda/$(1)-$(2)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(2) $(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -tags lambda.norpc -o $(BUILD)/lambda/$(1)-$(2)/bootstrap ./cmd/$(1)
	@touch -t 202001010000 $(BUILD)/lambda/$(1)-$(2)/bootstrap
	@rm -f $(3)
	cd $(BUILD)/lambda/$(1)-$(2) && zip -X -q $(abspath $(3)) bootstrap
endef

# The zips deploy/key_rotation.yaml's Code point at.
lambda:
	@test -n "$(LAMBDA_GOARCH)" || { echo "ARCH must be arm64 or x86_64, not $(ARCH)" >&2; exit 2; }
	$(call lambda-zip,keyrot-lambda,$(LAMBDA_GOARCH),$(BUILD)/keyrot-lambda.zip)
	$(call lambda-zip,keyrot-api-lambda,$(LAMBDA_GOARCH),$(BUILD)/keyrot-api-lambda.zip)
	@ls -l $(BUILD)/keyrot-lambda.zip $(BUILD)/keyrot-api-lambda.zip

# Uploads the zips (named by their MD5, so an unchanged build is not
# uploaded again) and writes the packaged template, deploy/key_rotation.yaml
# with the functions' Code on S3, to build/key_rotation.yaml (never over a
# tracked file).
package: lambda
	@test -n "$(BUCKET)" || { echo "usage: make package BUCKET=<S3 bucket in the stack's region>" >&2; exit 2; }
	aws cloudformation package --template-file deploy/key_rotation.yaml --s3-bucket $(BUCKET) --s3-prefix $(PREFIX) --output-template-file build/key_rotation.yaml
	aws cloudformation package --template-file deploy/organization.yaml --s3-bucket $(BUCKET) --s3-prefix $(PREFIX) --output-template-file build/organization.yaml
	@echo "deploy with: aws cloudformation deploy --template-file build/key_rotation.yaml --stack-name iam-key-rotation --parameter-overrides SenderEmail=... AdminEmail=... --capabilities CAPABILITY_IAM"

# $(call release-cli,GOOS,GOARCH): keyrot for one platform.
define release-cli
	CGO_ENABLED=0 GOOS=$(1) GOARCH=$(2) $(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(RELEASE_DIR)/keyrot-$(VERSION)-$(1)-$(2) ./cmd/keyrot
endef

release:
	@rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	$(call release-cli,linux,amd64)
	$(call release-cli,linux,arm64)
	$(call release-cli,darwin,amd64)
	$(call release-cli,darwin,arm64)
	$(call lambda-zip,keyrot-lambda,amd64,$(RELEASE_DIR)/keyrot-lambda-$(VERSION)-linux-amd64.zip)
	$(call lambda-zip,keyrot-lambda,arm64,$(RELEASE_DIR)/keyrot-lambda-$(VERSION)-linux-arm64.zip)
	$(call lambda-zip,keyrot-api-lambda,amd64,$(RELEASE_DIR)/keyrot-api-lambda-$(VERSION)-linux-amd64.zip)
	$(call lambda-zip,keyrot-api-lambda,arm64,$(RELEASE_DIR)/keyrot-api-lambda-$(VERSION)-linux-arm64.zip)
	cd $(RELEASE_DIR) && sha256sum keyrot-* > SHA256SUMS
	@ls -l $(RELEASE_DIR)

# Builds the release a second time with an empty build cache (so that
# nothing is reused) and compares the checksums: reproducible or not.
release-verify: release
	@rm -rf $(BUILD)/release-verify $(BUILD)/gocache-verify
	GOCACHE=$(abspath $(BUILD)/gocache-verify) $(MAKE) --no-print-directory release RELEASE_DIR=$(BUILD)/release-verify VERSION=$(VERSION)
	diff $(RELEASE_DIR)/SHA256SUMS $(BUILD)/release-verify/SHA256SUMS && echo "reproducible: both builds have the same SHA256SUMS"
	@rm -rf $(BUILD)/gocache-verify

lint-templates:
	cfn-lint deploy/*.yaml key_rotation.yaml

clean:
	rm -rf $(BUILD)
