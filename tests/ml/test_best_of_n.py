import numpy as np
import torch

from ml.best_of_n import BestOfNConfig, best_of_n
from ml.generation import GenerationConfig
from ml.reward import RewardConfig, RewardMLP, RewardModel


def test_keeps_the_k_highest_rewards_per_prompt(generator, clip):
    torch.manual_seed(0)
    reward = RewardModel(RewardMLP(clip.dim, clip.dim, 16), RewardConfig(hidden=16), clip.dim, clip.dim)
    cfg = BestOfNConfig(n=4, k=2, base_seed=10, generation=GenerationConfig(steps=2, batch_size=4))
    prompts = ["Two dogs", "A red cup"]
    result = best_of_n(cfg, generator, clip, reward, prompts)
    assert [s.image.prompt for s in result.kept] == ["Two dogs"] * 2 + ["A red cup"] * 2
    for i, p in enumerate(prompts):
        all_r = np.array(result.all_rewards[p])
        kept = result.kept[2 * i : 2 * i + 2]
        assert len(all_r) == 4 and [s.rank for s in kept] == [0, 1]
        assert np.allclose([s.reward for s in kept], np.sort(all_r)[::-1][:2], atol=1e-6)
        assert all(10 <= s.image.seed < 14 and all_r[s.image.seed - 10] == s.reward for s in kept)
