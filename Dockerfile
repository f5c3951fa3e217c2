# One image for every shop-checkout process; the command picks the service (k8s/base: `python -m <package>`).
#   docker build -t shop-checkout:dev .
#   docker run --rm shop-checkout:dev python -m inventory_svc        # or gateway, cart_svc, …, psp_sandbox
# Dependencies come from constraints.txt (the pinned set `make install` and CI use); every one of them ships a
# wheel for linux/amd64 and arm64, so neither stage needs a compiler. Linted by hadolint in k8s/validate.sh.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first (a layer that changes only with pyproject.toml or constraints.txt), then the code.
COPY pyproject.toml constraints.txt README.md ./
COPY generated/ generated/
COPY service_runtime/ service_runtime/
COPY gateway/ gateway/
COPY cart_svc/ cart_svc/
COPY inventory_svc/ inventory_svc/
COPY payment_svc/ payment_svc/
COPY order_svc/ order_svc/
COPY shipping_svc/ shipping_svc/
COPY notification_svc/ notification_svc/
COPY psp_sandbox/ psp_sandbox/
COPY checkoutctl/ checkoutctl/
COPY devstack/ devstack/
# A regular (not editable) install: the code and its data files (migrations, queries, rates, descriptors)
# land in /opt/venv/lib/python3.11/site-packages, where k8s/base/config/shipping-svc.env expects the rates.
RUN /opt/venv/bin/pip install --no-compile -c constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3.11/site-packages

FROM python:3.11-slim-bookworm
# The non-root user the manifests run as (runAsUser 10001); no shell login, no home to write to.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shop
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 50050-50056 9464
CMD ["python", "-m", "gateway"]
