"""`psyassist serve --backend vllm` on a GPU: the same routes, adapters as vLLM multi-LoRA requests.

    .venv/bin/python -m pytest tests/test_serve_vllm.py -m gpu

Never run by `make test` (marker gpu).  Needs CUDA and `pip install vllm`; it has not run on
a GPU machine in this project yet (docs/serving.md says so).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def test_vllm_backend_serves_base_and_adapters_with_the_openai_client(tmp_path, qwen3_tokenizer_dir):
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from psyassist.models import save_tiny_qwen3
    from test_serve import Server

    model_dir = save_tiny_qwen3(tmp_path / "tiny", qwen3_tokenizer_dir, hidden_size=128, heads=4, kv_heads=2)
    for seed, name in ((1, "warm"), (2, "brief")):
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                              LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g))
        peft.save_pretrained(tmp_path / "adapters" / name)

    from psyassist.serve.app import ServeConfig

    s = Server(ServeConfig(model=str(model_dir), adapter_dir=tmp_path / "adapters", backend="vllm",
                           max_adapters=2, api_keys=["k"]))
    try:
        client = s.client(key="k")
        assert [m.id for m in client.models.list().data] == ["tiny", "brief", "warm"]
        out = {}
        for m in ("tiny", "warm", "brief"):
            r = client.chat.completions.create(model=m, messages=[{"role": "user", "content": "Hello"}],
                                               max_tokens=8, temperature=0)
            assert r.usage.completion_tokens >= 1
            out[m] = r.choices[0].message.content
        assert len(set(out.values())) == 3
        chunks = list(client.chat.completions.create(model="warm", messages=[{"role": "user", "content": "Hello"}],
                                                     max_tokens=8, temperature=0, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == out["warm"]
    finally:
        s.stop()
