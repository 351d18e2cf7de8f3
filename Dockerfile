# One image for the API, the migrate job and the workers.
# GPU workers: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 (default: PyPI's torch).
FROM python:3.11-slim
ARG TORCH_SPEC="torch>=2.4"
ARG TORCH_INDEX=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/t2i-feedback
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY ml ./ml
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN if [ -n "$TORCH_INDEX" ]; then pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX"; else pip install "$TORCH_SPEC"; fi \
 && pip install -e ".[ml,s3]"
RUN useradd --create-home --uid 1000 t2if && mkdir -p /data && chown t2if /data
USER t2if
EXPOSE 8000
CMD ["t2i-feedback", "serve", "--host", "0.0.0.0", "--port", "8000"]
