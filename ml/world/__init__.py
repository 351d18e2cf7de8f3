"""The shapes world: a synthetic text-to-image world in which the feedback loop's effect is measurable.

- `scene`: scenes (1-4 shapes of one colour on a background) and their pixels;
- `corpus`: pre-training pairs whose captions are wrong by design (the base's misalignment);
- `oracle`: reads a scene back from pixels and says, per attribute, whether an image shows its prompt;
- `raters`: annotators built on the oracle, with an error rate;
- `build`: trains the world's VAE, CLIP and diffusion UNet (`t2i-feedback ml make-world-models`);
- `loop`: one offline round, base vs uniform vs reward-weighted (`t2i-feedback ml world-loop`).

The package ships trained weights in `models/` (`SHIPPED_MODELS`), so nobody waits for pre-training.
"""

from pathlib import Path

SHIPPED_MODELS = Path(__file__).parent / "models"
