"""Images: registering outside images (validated, content-addressed), serving them, gold marks."""

from __future__ import annotations

import hashlib
import io

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.auth.identity import UserIdentity
from app.config import Settings
from app.db.enums import ImageSource, Role
from app.db.models import Image, Rating, RatingAssignment
from app.errors import AppError, Invalid, NotFound
from app.images.schemas import ImageGoldUpdate, ImageRead
from app.prompts import service as prompts
from app.storage import StorageError, image_key, storage_for

FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
# Limits on what an uploaded image may decode to, judged from its header before any pixel is
# decoded. A few kilobytes of PNG or JPEG can claim 60000×60000 pixels (a decompression bomb), and
# even a real 8000×8000 image costs over a gigabyte of memory in a worker's CLIP embedding. Generated
# images are 512–1024 px a side; 4096 leaves room for any upscaled one. The side limit stops strips
# such as 65535×1; the pixel limit bounds the area (at 4096² it binds only if MAX_SIDE is raised).
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 4096  # 16 megapixels


class UnsupportedImage(AppError):
    status_code = 415
    code = "unsupported_media_type"


class TooLarge(AppError):
    status_code = 413
    code = "too_large"


def image_url(image_id: int) -> str:
    return f"/api/v1/images/{image_id}/file"


def to_read(image: Image, *, include_gold: bool) -> ImageRead:
    out = ImageRead.model_validate(image)
    out.image_url = image_url(image.id)
    if not include_gold:
        out.gold_label = None
    return out


def inspect_image(data: bytes) -> tuple[str, str, int, int]:
    """(mime type, extension, width, height) of a PNG / JPEG / WebP, judged by its bytes, not its name.
    Only the header is parsed before the size is checked (PIL's open decodes no pixels)."""
    limits = f"the limit is {MAX_SIDE} pixels a side and {MAX_PIXELS:,} pixels in all"
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
            width, height = im.size
            if fmt not in FORMATS:
                raise UnsupportedImage(f"Only PNG, JPEG or WebP images are accepted; this file is {fmt or 'unknown'}.")
            if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
                raise TooLarge(f"The image is {width}×{height} pixels; {limits}.")
            im.verify()  # catches truncated or corrupt files
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        # PIL's own guard, raised by open() itself for headers past ~179 megapixels (its warning,
        # from ~89 megapixels, is an error where warnings are turned into errors)
        raise TooLarge(f"The image's header claims far more pixels than allowed; {limits}.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UnsupportedImage("The file is not a readable PNG, JPEG or WebP image.") from exc
    mime, ext = FORMATS[fmt]
    return mime, ext, width, height


def register_image(
    session: Session,
    settings: Settings,
    *,
    data: bytes,
    prompt_set_id: int,
    prompt_text: str,
    seed: int | None,
    gold_label: str | None,
    uploader_id: int,
) -> tuple[ImageRead, bool]:
    """Store an image made elsewhere. Returns (image, created); the same bytes for the same prompt
    are registered once, so a retried upload does not make a second item."""
    if len(data) == 0:
        raise Invalid("file: the upload is empty.")
    if len(data) > settings.max_upload_bytes:
        raise TooLarge(f"The file is {len(data)} bytes; the limit is {settings.max_upload_bytes} bytes.")
    prompt_text = " ".join(prompt_text.split())
    if not prompt_text or len(prompt_text) > 1000:
        raise Invalid("prompt: give the prompt text (1 to 1000 characters).")
    ps = prompts.get_prompt_set_row(session, prompt_set_id)
    mime, ext, width, height = inspect_image(data)
    digest = hashlib.sha256(data).hexdigest()
    prompt = prompts.find_or_create_prompt(session, ps.id, prompt_text)
    existing = session.scalar(select(Image).where(Image.prompt_id == prompt.id, Image.content_hash == digest))
    if existing is not None:
        return to_read(existing, include_gold=True), False
    key = image_key(digest, ext)
    store = storage_for(settings.storage_url)
    if not store.exists(key):
        store.put(key, data)
    wanted = ps.labels_per_image
    image = Image(
        prompt_id=prompt.id,
        prompt_set_id=ps.id,
        source=ImageSource.uploaded.value,
        uploaded_by_id=uploader_id,
        seed=seed,
        sampler={},
        storage_key=key,
        content_hash=digest,
        mime_type=mime,
        width=width,
        height=height,
        byte_size=len(data),
        gold_label=gold_label,
        ratings_wanted=wanted,
        ratings_open=wanted,
    )
    session.add(image)
    session.flush()
    return to_read(image, include_gold=True), True


def get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    return image


def file_response(settings: Settings, image: Image) -> Response:
    """The image file as an HTTP answer (404 when storage lost it)."""
    try:
        data = read_file(settings, image)
    except StorageError as exc:
        raise NotFound("The file of this image is missing from storage.") from exc
    # content-addressed and never rewritten: the browser may keep it, but only for this user
    return Response(data, media_type=image.mime_type,
                    headers={"cache-control": "private, max-age=86400, immutable", "content-disposition": "inline"})


def image_for_viewer(session: Session, image_id: int, viewer: UserIdentity) -> Image:
    """An image's row, for someone about to see its file. An annotator sees only images they were
    given to rate: any other id answers 404, so nobody can walk the ids to learn which image of an
    evaluation pair came from which model (pairs are shown by assignment and side, never by id)."""
    if Role(viewer.role).rank < Role.researcher.rank and session.scalar(
        select(RatingAssignment.id).where(RatingAssignment.image_id == image_id,
                                          RatingAssignment.annotator_id == viewer.id)
    ) is None:
        raise NotFound(f"Image {image_id} does not exist.")
    return get_image(session, image_id)


def read_file(settings: Settings, image: Image) -> bytes:
    return storage_for(settings.storage_url).get(image.storage_key)


def recount_open_slots(session: Session, image: Image) -> None:
    """ratings_open = wanted - usable labels - live leases (used when an image's gold mark changes)."""
    usable = session.scalar(
        select(func.count()).where(Rating.image_id == image.id, Rating.label.in_(("good", "bad")))
    ) or 0
    # every lease still in state 'leased' holds its slot, expired or not: the sweep gives it back
    # when it releases the lease, and until then a late answer on it may still be accepted
    live = session.scalar(
        select(func.count()).where(
            RatingAssignment.image_id == image.id,
            RatingAssignment.state == "leased",
            RatingAssignment.is_gold.is_(False),
        )
    ) or 0
    image.ratings_open = max(0, min(image.ratings_wanted, image.ratings_wanted - usable - live))


def set_gold(session: Session, image_id: int, body: ImageGoldUpdate) -> ImageRead:
    image = session.scalar(select(Image).where(Image.id == image_id).with_for_update())
    if image is None:
        raise NotFound(f"Image {image_id} does not exist.")
    image.gold_label = body.gold_label
    recount_open_slots(session, image)
    session.flush()
    return to_read(image, include_gold=True)
