# One image with every Shopstream binary. The operator runs it, and starts
# generator, worker and dashboard pods from the same image (spec.image or the chart's
# operator.defaultImage overrides it).
#
#   docker build --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t ghcr.io/shopstream/shopstream:0.1.0 .
#
# Its root filesystem is made by scripts/stage-rootfs.sh, the same script
# scripts/build-image.sh builds the image with here without Docker; the user,
# ports, entrypoint and command below are those of image/spec.env
# (scripts/smoke-image.sh checks that they agree).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ARG SOURCE_DATE_EPOCH=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p shopstream-operator -p shopstream-worker -p shopstream-generator -p shopstream-dashboard \
 && mkdir -p /out \
 && for b in operator worker generator dashboard; do cp "target/release/shopstream-$b" /out/; done
RUN apt-get update -q && SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" SHOPSTREAM_DEB_CACHE=/tmp/debs \
    scripts/stage-rootfs.sh /out /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 9090/tcp 9100/tcp 8080/tcp
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["/usr/local/bin/shopstream-operator"]
CMD ["run"]
