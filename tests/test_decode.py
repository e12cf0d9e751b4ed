import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import decode
from scaling.model import ModelConfig, init_params

EOS, PAD, OPEN, CLOSE = 1, 0, 259, 260
PROTOCOL = decode.Protocol(eos_id=EOS, pad_id=PAD, think_open_id=OPEN, think_close_id=CLOSE,
                           wait_ids=(90, 91), close_ids=(CLOSE, 70, 71), max_answer_tokens=4)


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, vocab_size=264, seq_len=64)
    return config, nn.unbox(init_params(config, jax.random.PRNGKey(0)))


def _script(proposals, budget, extensions):
    """Drive the budget-forcing machine for one row with the tokens a model would propose."""
    state = decode.initial_state(1, budget, extensions)
    emitted = []
    for proposed in proposals:
        if int(state.phase[0]) == decode.PHASE_DONE:
            break
        token, kind, state = decode.force_step(state, jnp.array([proposed], jnp.int32), PROTOCOL, budget)
        emitted.append((int(token[0]), int(kind[0])))
    return emitted, state


def test_cap_forces_close_and_answer_at_the_budget():
    emitted, state = _script([10, 11, 12, 13, 14, 15, 16, 50, 51, EOS], budget=3, extensions=0)
    # 3 own thinking tokens; the next three proposals are overridden by </think> + answer cue.
    assert [t for t, _ in emitted] == [10, 11, 12, CLOSE, 70, 71, 16, 50, 51, EOS]
    assert [k for _, k in emitted] == [1, 1, 1, 3, 3, 3, 4, 4, 4, 4]
    assert int(state.thinking[0]) == 3 and int(state.phase[0]) == decode.PHASE_DONE


def test_early_close_is_replaced_by_wait_until_extensions_run_out():
    proposals = [10, CLOSE, 20, 21, EOS, 30, CLOSE, 60, 61, 62, 63, 64, 65, 66]
    emitted, state = _script(proposals, budget=100, extensions=2)
    tokens = [t for t, _ in emitted]
    # first </think> -> "Wait" (2 tokens, overriding 20), EOS -> "Wait" again, third close stands.
    assert tokens[:9] == [10, 90, 91, 21, 90, 91, CLOSE, 70, 71]
    assert tokens[9:] == [62, 63, 64, 65]  # answer capped at max_answer_tokens=4
    assert int(state.thinking[0]) == 6 and int(state.extensions_left[0]) == 0


def test_cap_interrupts_a_wait_and_zero_budget_answers_directly():
    emitted, _ = _script([10, CLOSE, 5, 5, 5, 5, EOS], budget=2, extensions=1)
    assert [t for t, _ in emitted][:5] == [10, 90, CLOSE, 70, 71]
    emitted, state = _script([CLOSE, 40, EOS, 9], budget=0, extensions=3)
    assert emitted == [(CLOSE, 4), (40, 4), (EOS, 4)] and int(state.thinking[0]) == 0


@pytest.mark.parametrize("budget, extensions", [(0, 0), (6, 2)])
def test_greedy_cache_decoding_equals_full_recompute(model, budget, extensions):
    config, params = model
    prompts, lengths = decode.pad_prompts([[5, 6, 7, 8, 9, OPEN], [10, 11, OPEN], list(range(20, 55))], PAD, bucket=16)
    cached = decode.decode(config, params, prompts, lengths, PROTOCOL, budget, extensions)
    naive = decode.decode_by_recompute(config, params, prompts, lengths, PROTOCOL, budget, extensions, bucket=16)
    np.testing.assert_array_equal(cached.tokens, naive.tokens)
    np.testing.assert_array_equal(cached.kinds, naive.kinds)
    assert (cached.thinking <= budget).all() and (cached.generated >= 1).all()
    assert (cached.generated <= PROTOCOL.max_new_tokens(budget)).all()


def test_cache_and_recompute_agree_when_the_model_keeps_trying_to_stop(model):
    """Declare the token this model emits most as the end of thinking: extend and cap both fire."""
    config, params = model
    prompts, lengths = decode.pad_prompts([[5, 6, 7, 8, 9, OPEN], [10, 11, OPEN], [40, 41, 42, OPEN]], PAD, bucket=16)
    free = decode.decode(config, params, prompts, lengths, PROTOCOL, 12)
    values, counts = np.unique(free.tokens[free.kinds == decode.KIND_THINKING], return_counts=True)
    eager = dataclasses.replace(PROTOCOL, think_close_id=int(values[np.argmax(counts)]))
    cached = decode.decode(config, params, prompts, lengths, eager, 12, 2)
    naive = decode.decode_by_recompute(config, params, prompts, lengths, eager, 12, 2, bucket=16)
    np.testing.assert_array_equal(cached.tokens, naive.tokens)
    assert (cached.kinds == decode.KIND_WAIT).any() and (cached.thinking <= 12).all()


def test_answers_never_open_thinking(model):
    """Declare the model's favourite answer token to be `<think>`: it never appears in an answer."""
    config, params = model
    prompts, lengths = decode.pad_prompts([[5, 6, 7, 8, 9], [10, 11], [40, 41, 42]], PAD, bucket=16)
    free = decode.decode(config, params, prompts, lengths, PROTOCOL, 0)
    values, counts = np.unique(free.tokens[free.kinds == decode.KIND_ANSWER], return_counts=True)
    favourite = int(values[np.argmax(counts)])
    strict = dataclasses.replace(PROTOCOL, think_open_id=favourite)
    for budget in (0, 4):
        cached = decode.decode(config, params, prompts, lengths, strict, budget, temperature=1.0, seed=1)
        assert favourite not in cached.tokens[cached.kinds == decode.KIND_ANSWER]
        greedy = decode.decode(config, params, prompts, lengths, strict, budget)
        naive = decode.decode_by_recompute(config, params, prompts, lengths, strict, budget, bucket=16)
        np.testing.assert_array_equal(greedy.tokens, naive.tokens)


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(model):
    config, params = model
    prompts, lengths = decode.pad_prompts([[5, 6, 7, OPEN]] * 8, PAD)
    first = decode.decode(config, params, prompts, lengths, PROTOCOL, 8, temperature=1.0, seed=3)
    again = decode.decode(config, params, prompts, lengths, PROTOCOL, 8, temperature=1.0, seed=3)
    other = decode.decode(config, params, prompts, lengths, PROTOCOL, 8, temperature=1.0, seed=4)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert len({tuple(row) for row in first.tokens}) > 1  # samples of one prompt differ
    assert not np.array_equal(first.tokens, other.tokens)
    greedy = decode.decode(config, params, prompts, lengths, PROTOCOL, 8)
    nucleus = decode.decode(config, params, prompts, lengths, PROTOCOL, 8, temperature=1.0, top_p=1e-6, seed=3)
    np.testing.assert_array_equal(greedy.tokens, nucleus.tokens)


def test_answer_and_thinking_ids_follow_the_kinds(model):
    config, params = model
    prompts, lengths = decode.pad_prompts([[5, 6, 7, OPEN]], PAD)
    out = decode.decode(config, params, prompts, lengths, PROTOCOL, 5)
    row_kinds = out.kinds[0][: out.generated[0]].tolist()
    assert row_kinds[:8] == [1] * 5 + [3] * 3 and set(row_kinds[8:]) == {4}
    assert out.thinking_ids(0) == out.tokens[0][:5].tolist()
    assert out.answer_ids(0) == out.tokens[0][8:out.generated[0]].tolist()


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        decode.pad_prompts([[1, 2], []], PAD)


def test_a_row_decodes_the_same_alone_or_beside_other_budgets_and_temperatures(model):
    """Per-row budgets, temperatures and seeds: settings share one batch (and one compiled
    program), and no row's tokens depend on its neighbours or on the room left for them."""
    config, params = model
    prompts = [[5, 6, 7, 8, 9, OPEN], [10, 11, OPEN], list(range(20, 45)) + [OPEN], [40, 41, 42, OPEN]]
    budgets, temperatures, seeds = [0, 6, 12, 3], [0.0, 1.0, 0.0, 1.0], [11, 12, 13, 14]
    padded, lengths = decode.pad_prompts(prompts, PAD)
    room = PROTOCOL.max_new_tokens(max(budgets))
    together = decode.decode(config, params, padded, lengths, PROTOCOL, budgets, temperature=temperatures,
                             seed=seeds, max_new=room)
    for row in range(len(prompts)):
        alone = decode.decode(config, params, padded[row:row + 1], lengths[row:row + 1], PROTOCOL, budgets[row],
                              temperature=temperatures[row], seed=seeds[row:row + 1], max_new=room + 8)
        n = together.generated[row]
        assert alone.generated[0] == n
        np.testing.assert_array_equal(alone.tokens[0][:n], together.tokens[row][:n])
        assert int(alone.thinking[0]) == int(together.thinking[row]) <= budgets[row]
    # More left padding (infer pads a run's every prompt to its longest one's width): the same tokens.
    wider, _ = decode.pad_prompts(prompts, PAD, width=padded.shape[1] + 32)
    again = decode.decode(config, params, wider, lengths, PROTOCOL, budgets, temperature=temperatures,
                          seed=seeds, max_new=room)
    np.testing.assert_array_equal(again.tokens, together.tokens)
    with pytest.raises(ValueError, match="longest prompt"):
        decode.pad_prompts(prompts, PAD, width=8)
    with pytest.raises(ValueError, match="max_new"):
        decode.decode(config, params, padded, lengths, PROTOCOL, budgets, max_new=room - 1)
