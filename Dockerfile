# fusionhook image: one multi-stage build, a minimal non-root runtime.
#   docker build -t fusionhook .
#   docker run --rm -v $PWD/examples:/config fusionhook fusionhook-receiver --config /config/receiver.yaml
# The operator binary joins this image when it exists (issue #4) and becomes
# the default command; the receiver keeps its own command.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p fusionhook-receiver --bin fusionhook-receiver \
 && install -D -m 0755 target/release/fusionhook-receiver /out/fusionhook-receiver

# distroless/cc: glibc and libgcc only, no shell, runs as uid 65532. TLS roots
# are compiled into the binary (rustls + webpki roots), so no CA bundle is needed.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fusionhook" \
      org.opencontainers.image.description="FusionAuth webhooks the Kubernetes way: receiver (and operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/fusionhook/fusionhook"
COPY --from=build /out/fusionhook-receiver /usr/local/bin/fusionhook-receiver
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fusionhook-receiver"]
CMD ["--config", "/etc/fusionhook/receiver.yaml"]
