# The kabench image, for `kabench fleet k8s` (and any container run):
#   docker build -t kabench:0.1.0 .
# Stage 1 builds the release binary with the Rust toolchain; stage 2 is a small Debian
# base with only the binary and the example scenarios (it keeps /bin/sh, which the
# merge Job's wait loop uses). Nothing of the toolchain or the sources is shipped.
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin kabench \
    && strip target/release/kabench

FROM debian:trixie-slim
RUN useradd --create-home --uid 10001 kabench
COPY --from=build /src/target/release/kabench /usr/local/bin/kabench
COPY scenarios /usr/share/kabench/scenarios
USER 10001
WORKDIR /home/kabench
CMD ["kabench", "--help"]
