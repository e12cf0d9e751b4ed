"""Decoding with a key/value cache and s1-style budget forcing, compiled once per shape.

The whole generation is one `jax.jit`-compiled `lax.while_loop`: prompts are left-padded to a
bucketed length, so every row writes its next token's key and value into the same cache slot
(one in-place update per step, whatever the rows' prompt lengths); the cache is allocated for
the longest possible output up front, and every row of the batch (problems x samples) carries
its own position and its own budget-forcing state.

Budget forcing (Muennighoff et al. 2025, s1, arXiv 2501.19393) is a per-row state machine,
`force_step`, fed the token the model would emit and returning the token actually emitted:
- thinking phase (T > 0; the prompt ends with `<think>`): the model's own tokens count as
  thinking; once T thinking tokens are written the close sequence (`</think>` and the answer cue)
  is forced (cap); a `</think>` or EOS written before T is replaced by the wait sequence
  ("Wait") as long as extensions remain (extend), otherwise it closes thinking early;
- answer phase: the model's own tokens until EOS or `max_answer_tokens`.
T = 0 starts in the answer phase. While answering, `<think>` is masked out of the model's
choices, so thinking happens only inside the budget (T = 0 means no thinking). The same machine
drives the cache decoder and the full-recompute reference decoder, which therefore agree token
for token under greedy decoding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scaling.model import ModelConfig, Transformer, init_cache

PHASE_THINK, PHASE_ANSWER, PHASE_DONE = 0, 1, 2
QUEUE_NONE, QUEUE_WAIT, QUEUE_CLOSE = 0, 1, 2
# What each emitted token was, for the caller to read answers and count thinking.
KIND_PAD, KIND_THINKING, KIND_WAIT, KIND_CLOSE, KIND_ANSWER = 0, 1, 2, 3, 4


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Token ids of the test-time protocol (a static argument of the compiled decoder)."""

    eos_id: int
    pad_id: int
    think_open_id: int  # never sampled while answering: an answer holds no uncounted thinking
    think_close_id: int
    wait_ids: tuple[int, ...]  # replaces an early `</think>` (extend)
    close_ids: tuple[int, ...]  # forced at the budget: `</think>` then the answer cue (cap)
    max_answer_tokens: int

    def __post_init__(self):
        if not self.wait_ids or not self.close_ids:
            raise ValueError("Protocol.wait_ids and Protocol.close_ids must not be empty")
        if self.max_answer_tokens < 1:
            raise ValueError(f"Protocol.max_answer_tokens must be >= 1, got {self.max_answer_tokens}")

    def max_new_tokens(self, thinking_budget: int) -> int:
        """The most tokens one row can emit: T thinking, the close sequence, the answer."""
        if thinking_budget == 0:
            return self.max_answer_tokens
        return thinking_budget + len(self.close_ids) + self.max_answer_tokens


class ForcingState(NamedTuple):
    """Per-row budget-forcing state; every field is an int32 array of shape [batch]."""

    phase: jax.Array
    thinking: jax.Array  # thinking tokens emitted so far (own tokens and forced waits)
    answer: jax.Array  # answer tokens emitted so far
    extensions_left: jax.Array
    queue: jax.Array  # which forced sequence is being emitted (QUEUE_*)
    queue_index: jax.Array  # next position in that sequence


def initial_state(batch: int, thinking_budget, max_extensions) -> ForcingState:
    zeros = jnp.zeros((batch,), jnp.int32)
    phase = jnp.where(jnp.asarray(thinking_budget) > 0, PHASE_THINK, PHASE_ANSWER)
    return ForcingState(phase=zeros + phase, thinking=zeros, answer=zeros,
                        extensions_left=zeros + jnp.asarray(max_extensions, jnp.int32),
                        queue=zeros, queue_index=zeros)


def force_step(state: ForcingState, proposed, protocol: Protocol, thinking_budget):
    """One step of budget forcing: the model proposes a token per row; returns (token, kind, state)."""
    wait, close = jnp.asarray(protocol.wait_ids), jnp.asarray(protocol.close_ids)
    thinking_phase = state.phase == PHASE_THINK
    in_wait, in_close = state.queue == QUEUE_WAIT, state.queue == QUEUE_CLOSE
    at_cap = thinking_phase & (state.thinking >= thinking_budget)
    stops = (proposed == protocol.think_close_id) | (proposed == protocol.eos_id)
    free = thinking_phase & ~in_wait & ~at_cap  # the model's own choice counts
    extend = free & stops & (state.extensions_left > 0)
    close_now = at_cap | (free & stops & ~extend)
    own_thinking = free & ~stops
    continue_wait = in_wait & ~at_cap
    answering = (state.phase == PHASE_ANSWER) & ~in_close

    index = jnp.where(extend | close_now, 0, state.queue_index)
    wait_token = wait[jnp.minimum(index, len(protocol.wait_ids) - 1)]
    close_token = close[jnp.minimum(index, len(protocol.close_ids) - 1)]
    token = jnp.select([own_thinking | answering, extend | continue_wait, close_now | in_close],
                       [proposed, wait_token, close_token], protocol.pad_id)
    kind = jnp.select([own_thinking, extend | continue_wait, close_now | in_close, answering],
                      [KIND_THINKING, KIND_WAIT, KIND_CLOSE, KIND_ANSWER], KIND_PAD)

    queue = jnp.select([extend, close_now], [QUEUE_WAIT, QUEUE_CLOSE], state.queue)
    queue_index = jnp.where(queue != QUEUE_NONE, index + 1, 0)
    finished = ((queue == QUEUE_WAIT) & (queue_index >= len(protocol.wait_ids))) | \
               ((queue == QUEUE_CLOSE) & (queue_index >= len(protocol.close_ids)))
    queue = jnp.where(finished, QUEUE_NONE, queue)
    queue_index = jnp.where(finished, 0, queue_index)

    answer = state.answer + answering
    done = answering & ((proposed == protocol.eos_id) | (answer >= protocol.max_answer_tokens))
    phase = jnp.select([close_now, done], [PHASE_ANSWER, PHASE_DONE], state.phase)
    new_state = ForcingState(
        phase=phase.astype(jnp.int32),
        thinking=state.thinking + (own_thinking | extend | continue_wait),
        answer=answer.astype(jnp.int32),
        extensions_left=state.extensions_left - extend,
        queue=queue.astype(jnp.int32),
        queue_index=queue_index.astype(jnp.int32))
    return token.astype(jnp.int32), kind.astype(jnp.int8), new_state


def no_thinking_while_answering(logits, state: ForcingState, protocol: Protocol):
    """Mask `<think>` out of the logits of rows in the answer phase."""
    answering = (state.phase == PHASE_ANSWER)[:, None]
    opens = jnp.arange(logits.shape[-1])[None, :] == protocol.think_open_id
    return jnp.where(answering & opens, -jnp.inf, logits)


def sample_tokens(logits, temperature, top_p, keys, step):
    """Greedy where a row's temperature is 0, else temperature sampling within the top-p nucleus.
    temperature [batch]; keys [batch, 2]: each row draws from its own stream (folded with the
    step), so a row's tokens do not depend on which rows share its batch."""
    greedy = jnp.argmax(logits, axis=-1)
    scaled = logits / jnp.maximum(temperature, 1e-6)[:, None]
    descending = jnp.sort(scaled, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(descending, axis=-1)
    # Keep the smallest prefix whose probability reaches top_p (the first token always stays).
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    threshold = jnp.min(jnp.where(keep, descending, jnp.inf), axis=-1, keepdims=True)
    masked = jnp.where(scaled >= threshold, scaled, -jnp.inf)
    sampled = jax.vmap(lambda key, row: jax.random.categorical(jax.random.fold_in(key, step), row))(keys, masked)
    return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)


def row_keys(seeds) -> jax.Array:
    """One PRNG key per row from integer seeds [batch]."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))


@dataclasses.dataclass(frozen=True)
class Decoded:
    """Host-side results: tokens [batch, max_new], their kinds, and per-row counts."""

    tokens: np.ndarray
    kinds: np.ndarray
    generated: np.ndarray  # tokens emitted (forced ones included), per row
    thinking: np.ndarray  # thinking tokens (own and forced waits), per row
    prompt_lengths: np.ndarray

    def answer_ids(self, row: int) -> list[int]:
        return self.tokens[row][self.kinds[row] == KIND_ANSWER].tolist()

    def thinking_ids(self, row: int) -> list[int]:
        kinds = self.kinds[row]
        return self.tokens[row][(kinds == KIND_THINKING) | (kinds == KIND_WAIT)].tolist()


def prompt_width(longest: int, bucket: int = 32) -> int:
    """The padded width of prompts whose longest has `longest` tokens: a multiple of `bucket`."""
    return -(-int(longest) // bucket) * bucket


def pad_prompts(prompts: list[list[int]], pad_id: int, bucket: int = 32,
                width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad prompts to a multiple of `bucket` (or to `width`, when given, which fits them), so
    a handful of shapes cover every batch and every row's prompt ends at the same column (the
    decoders rely on it)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    lengths = np.array([len(p) for p in prompts], np.int32)
    if width is None:
        width = prompt_width(lengths.max(), bucket)
    elif width < lengths.max():
        raise ValueError(f"width={width} is less than the longest prompt ({int(lengths.max())} tokens)")
    padded = np.full((len(prompts), width), pad_id, np.int32)
    for row, prompt in enumerate(prompts):
        padded[row, width - len(prompt):] = prompt
    return padded, lengths


def _prompt_positions(width: int, prompt_lengths):
    """Absolute positions of left-padded prompt columns: negative on padding, 0 at a row's first token."""
    return jnp.arange(width, dtype=jnp.int32)[None, :] - (width - prompt_lengths)[:, None]


def decode(config: ModelConfig, params, prompts: np.ndarray, prompt_lengths: np.ndarray,
           protocol: Protocol, thinking_budget, max_extensions: int = 0,
           temperature=0.0, top_p: float = 1.0, seed=0, max_new: int | None = None) -> Decoded:
    """Generate for left-padded prompts [batch, width] (`pad_prompts`) with the KV cache (one compiled loop).

    thinking_budget, temperature and seed are one value for every row or one per row, so
    settings of different budgets and greedy and sampled rows can share a batch; a row's output
    depends only on its prompt, budget, temperature and seed (seed: one integer, from which the
    rows' streams are drawn, or one per row). max_new: room for this many new tokens (default:
    what the largest budget needs); calls with the same max_new and shapes share one compiled
    program, and a larger room changes no token (the loop stops when every row is done)."""
    batch = len(prompts)
    budgets = np.broadcast_to(np.asarray(thinking_budget, np.int32), (batch,))
    needed = protocol.max_new_tokens(int(budgets.max()))
    if max_new is None:
        max_new = needed
    elif max_new < needed:
        raise ValueError(f"max_new={max_new} is less than the {needed} tokens thinking_budget={int(budgets.max())} needs")
    seeds = np.asarray(seed)
    keys = row_keys(seeds) if seeds.ndim else jax.random.split(jax.random.PRNGKey(int(seeds)), batch)
    tokens, kinds, state = _decode_compiled(
        config, protocol, max_new, params, jnp.asarray(prompts, jnp.int32), jnp.asarray(prompt_lengths, jnp.int32),
        jnp.asarray(budgets), jnp.int32(max_extensions),
        jnp.asarray(np.broadcast_to(np.asarray(temperature, np.float32), (batch,))), jnp.float32(top_p), keys)
    return _to_host(tokens, kinds, state, prompt_lengths)


def _to_host(tokens, kinds, state: ForcingState, prompt_lengths) -> Decoded:
    tokens, kinds, thinking = jax.device_get((tokens, kinds, state.thinking))
    return Decoded(tokens=np.asarray(tokens), kinds=np.asarray(kinds),
                   generated=(np.asarray(kinds) != KIND_PAD).sum(axis=1), thinking=np.asarray(thinking),
                   prompt_lengths=np.asarray(prompt_lengths))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _decode_compiled(config, protocol, max_new, params, prompts, prompt_lengths, thinking_budget,
                     max_extensions, temperature, top_p, keys):
    batch, width = prompts.shape
    model = Transformer(config)
    cache = init_cache(config, batch, width + max_new, config.compute_dtype)
    # Padding before a short prompt lands in the cache at negative positions, which stay masked.
    logits, cache = model.apply({"params": params}, prompts, _prompt_positions(width, prompt_lengths), cache,
                                cache_index=0)
    last_logits = logits[:, -1]
    out_tokens = jnp.full((batch, max_new), protocol.pad_id, jnp.int32)
    out_kinds = jnp.zeros((batch, max_new), jnp.int8)
    state = initial_state(batch, thinking_budget, max_extensions)

    def not_finished(carry):
        step, _, _, _, _, _, state = carry
        return (step < max_new) & jnp.any(state.phase != PHASE_DONE)

    def one_token(carry):
        step, cache, last_logits, position, out_tokens, out_kinds, state = carry
        proposed = sample_tokens(no_thinking_while_answering(last_logits, state, protocol), temperature, top_p,
                                 keys, step)
        token, kind, state = force_step(state, proposed, protocol, thinking_budget)
        out_tokens = out_tokens.at[:, step].set(token)
        out_kinds = out_kinds.at[:, step].set(kind)
        logits, cache = model.apply({"params": params}, token[:, None], position[:, None], cache,
                                    cache_index=width + step)
        return step + 1, cache, logits[:, 0], position + 1, out_tokens, out_kinds, state

    carry = (jnp.int32(0), cache, last_logits, prompt_lengths, out_tokens, out_kinds, state)
    _, _, _, _, out_tokens, out_kinds, state = jax.lax.while_loop(not_finished, one_token, carry)
    return out_tokens, out_kinds, state


def decode_by_recompute(config: ModelConfig, params, prompts: np.ndarray, prompt_lengths: np.ndarray,
                        protocol: Protocol, thinking_budget: int, max_extensions: int = 0,
                        bucket: int = 64) -> Decoded:
    """Greedy reference decoder without a cache: every step runs the full forward pass over the
    sequence so far (padded up to a multiple of `bucket`, one compiled step per length bucket).

    Slow by design; it checks the cache decoder and is the baseline of benchmarks/decode.py.
    """
    batch, width = prompts.shape
    max_new = protocol.max_new_tokens(thinking_budget)
    total = -(-(width + max_new) // bucket) * bucket
    sequence = jnp.zeros((batch, total), jnp.int32).at[:, :width].set(prompts)
    positions = _prompt_positions(total, jnp.asarray(prompt_lengths, jnp.int32) + total - width)
    state = initial_state(batch, thinking_budget, max_extensions)
    out_tokens, out_kinds = [], []
    budget = jnp.int32(thinking_budget)
    for step in range(max_new):
        if bool(jnp.all(state.phase == PHASE_DONE)):
            break
        column = width + step  # where this step's token goes, the same for every row
        length = -(-column // bucket) * bucket
        token, kind, state, sequence = _recompute_step(config, protocol, length, params, sequence, positions,
                                                       jnp.int32(column), state, budget)
        out_tokens.append(token)
        out_kinds.append(kind)
    tokens = jnp.full((batch, max_new), protocol.pad_id, jnp.int32)
    kinds = jnp.zeros((batch, max_new), jnp.int8)
    if out_tokens:
        tokens = tokens.at[:, :len(out_tokens)].set(jnp.stack(out_tokens, axis=1))
        kinds = kinds.at[:, :len(out_kinds)].set(jnp.stack(out_kinds, axis=1))
    return _to_host(tokens, kinds, state, prompt_lengths)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _recompute_step(config, protocol, length, params, sequence, positions, column, state, thinking_budget):
    # Left padding is its own segment (negative positions), so no real token attends to it.
    window = positions[:, :length]
    logits, _ = Transformer(config).apply({"params": params}, sequence[:, :length], jnp.maximum(window, 0),
                                          segment_ids=(window >= 0).astype(jnp.int32))
    last = jax.lax.dynamic_index_in_dim(logits, column - 1, axis=1, keepdims=False)
    proposed = jnp.argmax(no_thinking_while_answering(last, state, protocol), axis=-1).astype(jnp.int32)
    token, kind, state = force_step(state, proposed, protocol, thinking_budget)
    sequence = jax.lax.dynamic_update_index_in_dim(sequence, token, column, axis=1)
    return token, kind, state, sequence
