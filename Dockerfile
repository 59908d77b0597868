# One image with every Shopstream binary. The operator runs it, and starts
# generator, worker and dashboard pods from the same image (spec.image or the chart's
# operator.defaultImage overrides it).
#
#   docker build -t ghcr.io/shopstream/shopstream:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p shopstream-operator -p shopstream-worker -p shopstream-generator -p shopstream-dashboard \
 && mkdir -p /out/bin /out/lib \
 && for b in operator worker generator dashboard; do cp "target/release/shopstream-$b" /out/bin/; done \
 # The distroless base has glibc and OpenSSL; bring the other shared libraries along.
 && for lib in $(ldd /out/bin/* | awk '/=> \// {print $3}' | sort -u | grep -E 'libz\.so'); do cp "$lib" /out/lib/; done

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lib/ /usr/lib/
COPY --from=build /out/bin/ /usr/local/bin/
# distroless "nonroot": UID/GID 65532, the same the pods' securityContext sets.
USER 65532:65532
EXPOSE 9090 9100
ENTRYPOINT ["shopstream-operator"]
CMD ["run"]
