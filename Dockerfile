# syntax=docker/dockerfile:1
# Build: a static musl binary without the sandbox (the production image needs no simulated clusters).
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --no-default-features --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/sovereign /sovereign

# Run: distroless static, non-root (uid 65532), nothing but the binary and CA certificates.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sovereign /usr/local/bin/sovereign
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sovereign"]
CMD ["run"]
