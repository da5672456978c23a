"""The app's event handlers over the served models: call the library, render what changed, never leave a stale view.

Each handler takes the session's face reference, the selected model and the controls' values (`CONTROLS` order) and
returns rendered HTML and text. A failure a visitor can cause (an unreadable upload, an evicted photo, a wrong key) is
never raised at the page: the view is reset and one plain sentence says what happened.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from sae.app import render
from sae.app.face_cache import FACE_CACHE_SIZE, GONE, FaceRef, FaceStore
from sae.app.models import ServedModel
from sae.app.outbox import OUTBOX_MAX_AGE, Outbox
from sae.app.pipeline import QualityCurve, privacy_view, quality_curve
from sae.app.sessions import SessionFaces
from sae.app.settings import CONTROLS, SettingsError, ShareSettings
from sae.app.uploads import Uploads
from sae.core.faces import PhotoError
from sae.core.rate import code_bytes
from sae.privacy import catalogue
from sae.privacy.codec import check_fits, decode_share, share_codes
from sae.privacy.formats import (
    KEY_MAGIC,
    PUBLIC_MAGIC,
    CodeFormatError,
    Key,
    KeyMismatchError,
    PassphraseError,
    PublicCode,
    key_nbytes,
    public_nbytes,
)
from sae.privacy.keystream import SECRET_BYTES
from sae.privacy.scheme import names_model
from sae.zoo.files import ASSETS

EXAMPLES = ASSETS / "examples"
MAX_CODE_FILE = 8_000_000  # bytes; public codes and keys of one face are a few kB
MAX_FACES = 64  # faces a received public code may hold (the Decode tab shows the first)
START = "Upload a photo, use the webcam, or pick an example (below the chart)."


@dataclass(frozen=True)
class ExploreView:
    """What the Explore tab shows: the face note, the panels, the chart, the linkage and budget lines; `view` and
    `reference` are the panels' props (`render.PANELS_TEMPLATE`): which face the panels show and its model input."""

    note: str
    panels: str
    chart: str
    linkage: str
    budget: str
    view: str = ""
    reference: str = ""

    def as_tuple(self) -> tuple[str, gr.HTML, str, str, str]:
        """The whole view, for a new face or model: the panels with their model input (an API client receives the
        panels as Gradio's update dict, {"value": HTML, "props": {"view", "reference"}}; /update's panels keep the
        slot unfilled)."""
        panels = gr.HTML(value=self.panels, view=self.view, reference=self.reference)
        return (self.note, panels, self.chart, self.linkage, self.budget)

    def moved(self) -> tuple[str, str, str, str]:
        """A control change of the same face: panels, chart, linkage, budget; the model input stays in the page."""
        return (self.panels, self.chart, self.linkage, self.budget)


@dataclass(frozen=True)
class FaceExtras:
    """What every control change of one face under one model reuses: its quality curve and its model input's <img>
    (the panels' `reference` prop, sent with a new face or model only)."""

    curve: QualityCurve
    reference: str


NO_FACE = "No face to show: the note under the photo says why."


def failure(message: str) -> str:
    """A plain message for the face note, marked as a failure."""
    return f'<span class="failure">{html.escape(render.sentence(message))}</span>'


def budget_text(served: ServedModel, settings: ShareSettings) -> str:
    """k, the non-zeros, the code's size, and the shared files' sizes at these settings."""
    model = served.model
    k, k_prime = settings.k, settings.k_prime(model.code_dim)
    keyed, groups = settings.keyed, model.num_groups
    public = public_nbytes(1, groups, model.code_dim, k_prime, 8, keyed)
    key = key_nbytes(1, groups, k, k_prime, settings.permute, keyed=keyed)
    part = " (a whole key's size; a key to part of it can differ)" if settings.owner_fraction < 1 else ""
    return (
        f"k = {k} per group × {groups} groups = **{k * groups} non-zeros** (about {code_bytes(groups, model.code_dim, k, 8)} bytes); "
        f"shared with k' = {k_prime} per group: public code {public} bytes, key {key} bytes{part}."
    )


def linkage_text(found: int, elsewhere: int, total: int, keyed: bool) -> str:
    """The line under the panels: what an attacker holding the photo finds in the public code, the verdict first (a
    count alone reads as a leak even where it is chance)."""
    every = ", every one" if found == total and not keyed else ""
    counts = (
        f"An attacker who has the photo finds {found} of its {total} values in it{every}, and {elsewhere} in the code of "
        "another image (the same photo mirrored"
    )
    if keyed:
        return (
            f"**Linkage**: the public code **does not point to this photo**. {counts}): values that match by chance among "
            "the code's padded entries, alike in any image's code."
        )
    return f"**Linkage**: the public code **points to this photo**. {counts}, a nearly identical face)."


def view_id(ref: FaceRef, served: ServedModel) -> str:
    """A short id of what the panels show (upload, crop, model): names the reference slot (`render.reference_slot`)."""
    return hashlib.blake2s(f"{ref.key}|{ref.whole}|{served.name}".encode(), digest_size=6).hexdigest()


def preview_seed(ref: FaceRef) -> int:
    """The seed of the shares the Explore view shows for a face: fixed per upload (the panels do not flicker as the
    controls move) and different between uploads, so no two faces' previews share secrets. Real shares (`make_share`)
    take everything from the OS instead."""
    return int(ref.key.rsplit("-", 1)[-1][:15], 16)


def curve_table(curve: QualityCurve) -> list[list[float]]:
    """The curve as rows (k, PSNR, SSIM); adding 0.0 turns a rounded -0.0 into 0.0."""
    rows = zip(curve.ks, curve.psnr, curve.ssim, strict=True)
    return [[int(k), round(float(p), 2) + 0.0, round(float(s), 4) + 0.0] for k, p, s in rows]


class Handlers:
    """The app's event handlers, bound to the served models (testable without a browser)."""

    def __init__(
        self, models: list[ServedModel], outbox: Path | None = None, *, uploads: Uploads | None = None, cache_size: int = FACE_CACHE_SIZE
    ):
        if not models:
            raise ValueError("the app needs at least one model")
        self.models = {served.name: served for served in models}
        self.default = models[0].name
        self.outbox = Outbox(outbox, OUTBOX_MAX_AGE)
        self.uploads = uploads or Uploads(keep=sorted(EXAMPLES.glob("*.png")))
        self.faces = FaceStore(models, self.uploads, cache_size)
        self.sessions = SessionFaces()

    # -- helpers -------------------------------------------------------------------------------------------------

    def served(self, name: str | None) -> ServedModel:
        if name not in self.models:
            raise SettingsError(f"unknown model {name!r}")
        return self.models[name]

    def _settings(self, served: ServedModel, values) -> ShareSettings:
        settings = ShareSettings.from_widgets(*values)
        if not 1 <= settings.k <= served.model.k_max:
            return replace(settings, k=min(max(settings.k, 1), served.model.k_max))
        return settings

    def _extras(self, ref: FaceRef, served: ServedModel) -> FaceExtras:
        return self.faces.extras(
            ref,
            served,
            lambda view: FaceExtras(
                quality_curve(served.model, view.face), render.reference_html(view.face.image, served.model.image_size)
            ),
        )

    def explore(self, ref: FaceRef | None, served: ServedModel, settings: ShareSettings) -> ExploreView:
        """The whole Explore view for a face (or the empty view without one)."""
        budget = budget_text(served, settings)
        if ref is None:
            return ExploreView(START, render.empty_panels("The panels appear here once a face is loaded."), "", "", budget)
        view = self.faces.view(ref, served)
        shown = privacy_view(served, view.face, replace(settings, seed=preview_seed(ref)))
        hidden = None
        if shown.hidden:
            hidden = (catalogue.ATTACKS[settings.extra_attack].title, shown.hidden)
        extras = self._extras(ref, served)
        view_key = view_id(ref, served)
        panels = render.panels_html(view_key, shown.panels, served.model.image_size, hidden)
        curve = extras.curve
        holder = shown.panels[0].psnr
        levels = {p.title: p.psnr for p in shown.panels[1:]}
        chart = render.chart_html(curve, settings.k, served.model.k_max, levels, holder)
        total = settings.k * served.model.num_groups
        linkage = linkage_text(shown.found, shown.found_elsewhere, total, settings.keyed)
        return ExploreView(view.message, panels, chart, linkage, budget, view_key, extras.reference)

    def _reset(self, served: ServedModel | None, settings: ShareSettings | None, message: str) -> tuple:
        """The view with no face, and one plain message: what every failed upload or lookup shows."""
        budget = "" if served is None or settings is None else budget_text(served, settings)
        return (None, *ExploreView(failure(message), render.empty_panels(NO_FACE), "", "", budget).as_tuple(), [])

    # -- events --------------------------------------------------------------------------------------------------

    def prepare(self, photo: str | Image.Image | None, whole: bool, model_name: str, *controls, session: str | None = None) -> tuple:
        """An upload (or a cleared photo) -> the session's face reference and the whole Explore view (`session`: the
        visitor's session id, under which the new reference is recorded for the control changes that follow)."""
        result = self._prepare(photo, whole, model_name, *controls)
        self.sessions.record(session, result[0])
        return result

    def _prepare(self, photo: str | Image.Image | None, whole: bool, model_name: str, *controls: object) -> tuple:
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
        except SettingsError as error:
            if isinstance(photo, str | Path):
                self.uploads.take(photo)  # unused, but nothing uploaded outlives the request
            return self._reset(None, None, str(error))
        if photo is None:
            return (None, *self.explore(None, served, settings).as_tuple(), [])
        try:
            ref = FaceRef(self.faces.add(photo), bool(whole))
            return self._face(ref, served, settings)
        except PhotoError as error:
            return self._reset(served, settings, str(error))

    def select(self, ref: FaceRef | None, whole: bool, model_name: str, *controls, session: str | None = None) -> tuple:
        """The whole-image toggle: the other cached crop of the same upload (the file itself is gone)."""
        read = self.sessions.latest(session, ref)
        result = (
            self._prepare(None, whole, model_name, *controls)
            if read is None
            else self._refresh(FaceRef(read.key, bool(whole)), model_name, controls)
        )
        self.sessions.record_if(session, read, result[0])
        return result

    def switch(self, ref: FaceRef | None, model_name: str, *controls, session: str | None = None) -> tuple:
        """Another model: same photo and settings (k capped at its k_max), encoded once by it."""
        read = self.sessions.latest(session, ref)
        result = self._switch(read, model_name, *controls)
        self.sessions.record_if(session, read, result[1])
        return result

    def _switch(self, ref: FaceRef | None, model_name: str, *controls) -> tuple:
        try:
            served = self.served(model_name)
            capped = min(ShareSettings.from_widgets(*controls).k, served.model.k_max)
        except SettingsError as error:
            return (gr.update(), *self._reset(None, None, str(error)))
        k = gr.update(maximum=served.model.k_max, value=capped)
        return (k, *self._refresh(ref, model_name, (capped, *controls[1:])))

    def _refresh(self, ref: FaceRef | None, model_name: str, controls) -> tuple:
        served = None
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
            if ref is None:
                return (None, *self.explore(None, served, settings).as_tuple(), [])
            return self._face(ref, served, settings)
        except (PhotoError, SettingsError) as error:
            return self._reset(served, None, str(error))

    def _face(self, ref: FaceRef, served: ServedModel, settings: ShareSettings) -> tuple:
        shown = self.explore(ref, served, settings)
        table = curve_table(self._extras(ref, served).curve)
        return (ref, *shown.as_tuple(), table)

    def update(self, ref: FaceRef | None, model_name: str, *controls, session: str | None = None) -> tuple:
        """A control change: panels, chart, linkage and budget (the face note, the table and the model input stay as
        they are), of the session's latest face (`sae.app.sessions`), drawn again if a newer one arrived meanwhile.
        Without a face only the budget changes: the panels keep what they say (the start text, or why the last upload
        failed)."""
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
            ref = self.sessions.latest(session, ref)
            if ref is None:
                return (gr.skip(), gr.skip(), gr.skip(), budget_text(served, settings))
            shown = self.explore(ref, served, settings)
            newer = self.sessions.latest(session, ref)
            return (shown if newer == ref else self.explore(newer, served, settings)).moved()
        except (PhotoError, SettingsError) as error:
            return (render.empty_panels(str(error)), "", "", "")

    def redraw(self, ref: FaceRef | None, whole: bool, model_name: str, *controls, session: str | None = None) -> tuple:
        """The page's redraw once an upload, a crop toggle or a model switch has landed: the whole view (the face
        reference, note, panels with their model input, chart, linkage, budget, table) of the session's latest face,
        with the crop, model and controls the page shows then. Whatever order the answers came in (a move answered
        before the face landed; an upload landing while a switch worked on the previous face), the page ends on one
        consistent view; nothing changes if another face or a failed upload was recorded while it drew (that answer,
        and the redraw after it, stand). Without a face only the budget changes: the panels keep what they say (the
        start text, or why the last upload failed)."""
        read = self.sessions.latest(session, ref)
        if read is None:
            try:
                served = self.served(model_name)
                return (*(gr.skip(),) * 5, budget_text(served, self._settings(served, controls)), gr.skip())
            except SettingsError as error:
                return self._reset(None, None, str(error))
        result = self._refresh(FaceRef(read.key, bool(whole)), model_name, controls)
        if not self.sessions.record_if(session, read, result[0]):
            return (gr.skip(),) * len(result)  # a newer face or a failed upload landed meanwhile: its answer stands
        return result

    def comparison(self, ref: FaceRef | None, model_name: str, *controls) -> str | None:
        """The side-by-side panels with their captions and the settings as one PNG (a file for the browser to save)."""
        if ref is None:
            raise gr.Error("Load a face first.")
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
            view = self.faces.view(ref, served)
        except (PhotoError, SettingsError) as error:
            raise gr.Error(render.sentence(str(error))) from None
        shown = privacy_view(served, view.face, replace(settings, seed=preview_seed(ref)))
        heading = f"{served.name}: {describe(settings, served)}"
        data = render.comparison_png(view.face.image, shown.panels, heading)
        shows = hashlib.blake2s(f"{heading}|{shown.public.short_id()}|{settings.extra_attack}".encode(), digest_size=4).hexdigest()
        (path,) = self.outbox.write({f"comparison-k{settings.k}-{shows}.png": data})
        return str(path)

    def share_preview(self, ref: FaceRef | None, model_name: str, *controls) -> tuple[np.ndarray | None, str]:
        """The Share tab's view of what it will share: the face and the settings in words."""
        if ref is None:
            return None, "Load a face in the Explore tab first: the share uses that face and its settings."
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
            view = self.faces.view(ref, served)
        except (PhotoError, SettingsError) as error:
            return None, failure(str(error))
        return render.pixels(view.face.image), f"Will share this face with **{served.name}**: {describe(settings, served, attacker=False)}."

    def make_share(self, ref: FaceRef | None, model_name: str, passphrase: str, *controls) -> tuple[str | None, str | None, str]:
        """A real share (OS entropy, fresh secrets): the public code and the key as files named after the code."""
        if ref is None:
            return None, None, failure("Load a face in the Explore tab first.")
        try:
            served = self.served(model_name)
            settings = self._settings(served, controls)
            face = self.faces.view(ref, served).face
        except (PhotoError, SettingsError) as error:
            return None, None, failure(str(error))
        model = served.model
        public, key = share_codes(model, face.codes, settings.k, settings.k_prime(model.code_dim), settings.scheme, **settings.options())
        if settings.owner_fraction < 1.0:
            from sae.privacy.scheme import restrict

            key = restrict(public, key, settings.owner_fraction)
        stem = f"face-{public.short_id()}"
        public_path, key_path = self.outbox.write({f"{stem}.saep": public.to_bytes(), f"{stem}.saek": key.to_bytes(passphrase or None)})
        note = (
            f"Made with {served.name}. Public code `{public_path.name}`: {public_path.stat().st_size} bytes "
            f"({'keyed' if public.keyed else 'values in the clear'}, k' = {public.k_prime} per group). "
            f"Key `{key_path.name}`: {key_path.stat().st_size} bytes, unlocks {key.granted} entries"
            f"{', passphrase-protected' if passphrase else ''}. Keep the key private; the public code can go anywhere."
        )
        return str(public_path), str(key_path), note

    def receive(self, path: str | None, what: str) -> tuple[bytes | None, None, str]:
        """Decode tab: read an uploaded code or key into the session (the file is deleted) and clear the upload box."""
        if path is None:
            return None, None, ""
        data = self.uploads.take(path)
        if data is None:
            return None, None, failure(GONE)
        if len(data) > MAX_CODE_FILE:
            return None, None, failure(f"the {what} file is too large to be one of ours")
        return data, None, f"{what.capitalize()} received: {Path(path).name}, {len(data)} bytes (the uploaded file is already deleted)."

    def decode_received(
        self, public_data: bytes | None, key_data: bytes | None, model_name: str, passphrase: str = "", fraction: float = 1.0
    ) -> tuple[np.ndarray | None, str]:
        """A received public code and key -> the key holder's image; any failure clears the image and says why."""
        if public_data is None or key_data is None:
            return None, failure(f"Upload the {'public code' if public_data is None else 'key'} file.")
        swapped = swapped_files(public_data, key_data)
        if swapped:
            return None, failure(swapped)
        try:
            served = self.served(model_name)
            shape = (served.model.num_groups, served.model.code_dim)
            public = PublicCode.from_bytes(public_data, shape, MAX_FACES)
            key = Key.from_bytes(key_data, passphrase or None, shape, MAX_FACES)
            image = decode_share(served.model, public, key, float(fraction))
        except CodeFormatError as error:
            return None, failure(f"Damaged or unknown file: {error}")
        except KeyMismatchError as error:
            return None, failure(self.mismatch(public_data, served, error))
        except PassphraseError as error:
            return None, failure(f"Passphrase: {error}")
        except ValueError as error:
            return None, failure(str(error))
        except MemoryError:
            return None, failure("this file asks for more memory than the server has")
        unlocked = key.granted if float(fraction) >= 1 else None
        what = f"{unlocked} entries" if unlocked is not None else f"{float(fraction):.0%} of the key's entries"
        return render.pixels(
            image[0]
        ), f"Decoded with {what} ({public.num_groups} groups, {'keyed' if public.keyed else 'values in the clear'}) by {served.name}."

    def mismatch(self, public_data: bytes, chosen: ServedModel, error: KeyMismatchError) -> str:
        """Why a public code and a key do not go together, with the fix a user can make: another served model made the
        code (by its model id), a file that names no model fits other served models by its shape, no served model can
        have made it, or the key is not this code's."""
        try:
            public = PublicCode.from_bytes(public_data, None, MAX_FACES)
        except ValueError:
            return f"Wrong key: {error}"
        if _made(chosen, public):
            return f"Wrong key: {error}"
        makers = [served.name for served in self.models.values() if _made(served, public)]
        if makers and names_model(public):  # the same weights served twice share one model id
            return f"This public code was made with {' or '.join(makers)}: choose it in the Model menu at the top, then decode."
        if makers:
            fits = f"{makers[0]} fits" if len(makers) == 1 else f"{', '.join(makers[:-1])} and {makers[-1]} fit"
            return f"This public code names no model; {fits} its shape: choose it in the Model menu at the top, then decode."
        return f"This public code was made by a model this app does not serve ({public.num_groups} groups of {public.code_dim} entries)."

    def decode(
        self, public_file: str | None, key_file: str | None, model_name: str, passphrase: str = "", fraction: float = 1.0
    ) -> tuple[np.ndarray | None, str]:
        """A public code and key uploaded as files (the API's /decode) -> the key holder's image; the files are deleted."""
        public = self.receive(public_file, "public code")
        key = self.receive(key_file, "key")
        for received, path in ((public, public_file), (key, key_file)):
            if path is not None and received[0] is None:  # gone or too large: that reason, not "upload it"
                return None, received[2]
        return self.decode_received(public[0], key[0], model_name, passphrase, fraction)


def _made(served: ServedModel, public: PublicCode) -> bool:
    """Whether `served` can have made `public`: its shape, and its model id when the code names one (`check_fits`)."""
    try:
        check_fits(served.model, public)
    except KeyMismatchError:
        return False
    return True


def swapped_files(public_data: bytes, key_data: bytes) -> str:
    """What is wrong when the public code and the key are in each other's boxes ("" when they are not)."""
    key_there, public_there = public_data.startswith(KEY_MAGIC), key_data.startswith(PUBLIC_MAGIC)
    if key_there and public_there:
        return (
            "The two files are in each other's boxes: the public code (.saep) goes in the public code box, the key (.saek) in the key box."
        )
    if key_there:
        return "The public code box holds a key (.saek): upload the public code (.saep) there."
    if public_there:
        return "The key box holds a public code (.saep): upload the key (.saek) there."
    return ""


def describe(settings: ShareSettings, served: ServedModel, attacker: bool = True) -> str:
    """The settings in words: k, scheme, k', permutation, key fraction and, where attacks are shown (`attacker`), the
    guessing attacker's knowledge (a share itself does not use it)."""
    code_dim = served.model.code_dim
    shared = (
        f"k = {settings.k}, {settings.scheme} scheme, k' = {settings.k_prime(code_dim)}, "
        f"{'permuted' if settings.permute else 'not permuted'}, key fraction {settings.owner_fraction:.0%}"
    )
    secret = " (not the secret)" if settings.permute or settings.keyed else ""
    return shared + (f", attacker knows {settings.known_fraction:.0%} of the true entries{secret}" if attacker else "")


__all__ = ["CONTROLS", "Handlers", "SECRET_BYTES", "describe"]
