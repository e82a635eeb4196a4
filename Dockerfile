# The agentq worker image (for hosts with a registry; see docker-compose.yml).
# Agents run in their own containers through the host's Docker engine, so the
# worker needs the Docker socket and git, nothing else.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Only the two binaries' packages: a workspace-wide build would also turn on
# the tests' `fault-injection` feature (test-only clock skew).
RUN cargo build --release -p agentq -p agentq-worker --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/agentq /src/target/release/agentq-worker /usr/local/bin/
# exec form: the worker is PID 1 and gets SIGTERM itself (Sidekiq #6711).
ENTRYPOINT ["/usr/local/bin/agentq-worker"]
