# The rulebook image: one image for every role (web, ingest, Chroma server, chat channels), chosen
# by the entrypoint's first argument. Build: docker build -t rulebook .
# With a sentence-transformers model: docker build --build-arg EXTRAS=web,slack,feishu,dingtalk,sentence-transformers .
FROM python:3.11-slim

ARG EXTRAS=web,slack,feishu,dingtalk
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    RULEBOOK_DATA_DIR=/data RULEBOOK_RULES_DIR=/rules RULEBOOK_HOST=0.0.0.0 RULEBOOK_PORT=8000

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY assistant ./assistant
COPY ingest ./ingest
COPY eval ./eval
COPY prompts ./prompts
COPY examples/rulebook /rules
COPY deploy/entrypoint.sh /usr/local/bin/rulebook-entrypoint

# torch only when the sentence-transformers extra is asked for, and then the CPU build: a bare
# `torch` requirement pulls several GB of CUDA packages.
RUN case ",$EXTRAS," in \
        *,sentence-transformers,*) pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 ;; \
    esac \
    && pip install -c constraints.txt ".[$EXTRAS]" \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin rulebook \
    && mkdir -p /data && chown rulebook /data

USER rulebook
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('RULEBOOK_PORT', '8000'), timeout=4)"
ENTRYPOINT ["rulebook-entrypoint"]
CMD ["serve"]
