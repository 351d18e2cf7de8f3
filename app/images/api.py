"""REST: register outside images, fetch image files (logged-in users only), mark gold answers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi.responses import JSONResponse

from app.deps import AnnotatorDep, ResearcherDep, SessionDep, SettingsDep
from app.fields import Id, Int64, NoNul
from app.images import service
from app.images.schemas import ImageGoldUpdate, ImageRead

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.post("", response_model=ImageRead, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "the same image was already registered for this prompt"}})
def upload_image(
    principal: ResearcherDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PNG, JPEG or WebP")],
    prompt_set_id: Annotated[Id, Form()],
    prompt: Annotated[str, Form(max_length=1000), NoNul],
    seed: Annotated[Int64 | None, Form()] = None,
    gold_label: Annotated[Literal["good", "bad"] | None, Form()] = None,
) -> Response:
    data = file.file.read(settings.max_upload_bytes + 1)
    image, created = service.register_image(
        session, settings, data=data, prompt_set_id=prompt_set_id, prompt_text=prompt, seed=seed,
        gold_label=gold_label, uploader_id=principal.user.id,
    )
    return JSONResponse(image.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/{image_id}", response_model=ImageRead)
def get_image(image_id: int, principal: ResearcherDep, session: SessionDep) -> ImageRead:
    return service.to_read(service.get_image(session, image_id), include_gold=True)


@router.get("/{image_id}/file", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def image_file(image_id: int, principal: AnnotatorDep, session: SessionDep, settings: SettingsDep) -> Response:
    return service.file_response(settings, service.image_for_viewer(session, image_id, principal.user))




@router.patch("/{image_id}", response_model=ImageRead)
def mark_gold(image_id: int, body: ImageGoldUpdate, principal: ResearcherDep, session: SessionDep) -> ImageRead:
    return service.set_gold(session, image_id, body)
