# keyrot build and deployment. `make help` lists the targets.
#
#   make build                        the CLI and daemon into build/keyrot
#   make lambda [ARCH=arm64|x86_64]   the Lambda bootstrap and its zip
#   make package BUCKET=my-artifacts  upload the zip, write key_rotation.yaml
#
# After `make package`, the seed's command deploys as written:
#   aws cloudformation deploy --template-file key_rotation.yaml \
#     --stack-name iam-key-rotation \
#     --parameter-overrides SenderEmail=... AdminEmail=... \
#     --capabilities CAPABILITY_IAM
# (with ARCH=x86_64, add Architecture=x86_64 to the overrides).

GO          ?= go
ARCH        ?= arm64
BUCKET      ?=
PREFIX      ?= keyrot
BUILD       := build
LAMBDA_DIR  := $(BUILD)/lambda
LAMBDA_ZIP  := build/keyrot-lambda.zip

# Lambda names the instruction set x86_64, Go names it amd64.
GOARCH_arm64  := arm64
GOARCH_x86_64 := amd64
LAMBDA_GOARCH := $(GOARCH_$(ARCH))

.PHONY: help build lambda package clean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

build:
	$(GO) build -trimpath -o $(BUILD)/keyrot ./cmd/keyrot

# A static, stripped binary named bootstrap for the provided.al2023 runtime;
# lambda.norpc leaves out aws-lambda-go's legacy go1.x RPC server. The zip is
# built with fixed timestamps so that the same code gives the same S3 key.
lambda:
	@test -n "$(LAMBDA_GOARCH)" || { echo "ARCH must be arm64 or x86_64, not $(ARCH)" >&2; exit 2; }
	@mkdir -p $(LAMBDA_DIR)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_GOARCH) $(GO) build -trimpath -ldflags "-s -w" -tags lambda.norpc -o $(LAMBDA_DIR)/bootstrap ./cmd/keyrot-lambda
	@touch -t 202001010000 $(LAMBDA_DIR)/bootstrap
	@rm -f $(LAMBDA_ZIP)
	cd $(LAMBDA_DIR) && zip -X -q ../keyrot-lambda.zip bootstrap
	@ls -l $(LAMBDA_DIR)/bootstrap $(LAMBDA_ZIP)

# Uploads the zip (named by its MD5, so an unchanged build is not uploaded
# again) and writes the packaged template to key_rotation.yaml at the root,
# the seed's file name: deploy/key_rotation.yaml with Code on S3.
package: lambda
	@test -n "$(BUCKET)" || { echo "usage: make package BUCKET=<S3 bucket in the stack's region>" >&2; exit 2; }
	aws cloudformation package --template-file deploy/key_rotation.yaml --s3-bucket $(BUCKET) --s3-prefix $(PREFIX) --output-template-file key_rotation.yaml

clean:
	rm -rf $(BUILD)
