"""The training job: CLIBD's contrastive loss under Hugging Face Accelerate, resumable and observable.

The same code runs on the CPU, one GPU, or ``accelerate launch`` / ``torchrun`` across GPUs and nodes.
A run directory holds everything: ``train_config.json`` (resolved), ``metrics.jsonl``, ``status.json``,
``last/`` and ``best/`` (model directories; ``last/`` adds ``training_state.pt``) and, at the end,
``results.json`` / ``results.md`` (the paper's test table for the best checkpoint).

Determinism: the batch order of an epoch is a pure function of (seed, epoch) and the checkpoint keeps
the optimizer, the scheduler and the torch RNG, so a run killed at any moment and resumed with
``--resume`` ends with the weights an uninterrupted run reaches (one process; tests check it).
"""

from __future__ import annotations

import json
import signal
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch.utils.data import DataLoader
from tqdm import tqdm

from clibd_core.config import MODALITIES
from clibd_core.data.datasets import BatchListSampler, ImageDataset, balanced_batches, epoch_batches, shard
from clibd_core.data.records import Record, record_texts
from clibd_core.data.sources import read_source
from clibd_core.data.splits import KEY_SPLITS, assign_photo_splits, assign_splits
from clibd_core.data.transforms import random_barcode_window, train_transform
from clibd_core.encoding import FeatureCache, record_encoder
from clibd_core.evaluate import evaluate_records, markdown_table, mean_top1
from clibd_core.fileio import atomic_directory, write_json
from clibd_core.loss import clibd_loss
from clibd_core.models.clibd import PRETRAINED_PARTS, CLIBDModel, build_model, load_model
from clibd_core.presets import load_preset
from clibd_core.train.config import TrainConfig
from clibd_core.train.head import WithSpeciesHead
from clibd_core.train.monitor import RunMonitor
from clibd_core.train.sizing import fit_to_set

TRAINING_STATE = "training_state.pt"
TRAIN_SPLITS = ("train", "pretrain")
EVAL_SPLITS = ("val", "val_unseen", "test", "test_unseen", *KEY_SPLITS)


class RunExistsError(RuntimeError):
    """The output directory already holds a run: resume it or choose another directory."""


class _StopFlag:
    """Set by SIGTERM / SIGINT; the loop checks it between steps, saves and leaves."""

    def __init__(self) -> None:
        self.requested = False
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._handle)

    def _handle(self, number, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.requested = True


def _records(source: str, split_seed: int, split: str = "clibd", fold: int = 0) -> list[Record]:
    records = read_source(source).records
    if split == "photos":
        assign_photo_splits(records, seed=split_seed)
    else:
        assign_splits(records, seed=split_seed, fold=fold)
    return records


def _evaluation_pool(eval_pool: list[Record], train_records: list[Record], split: str) -> list[Record]:
    """Validation queries and their keys: the paper's key splits, or (photos) the training photos
    themselves, as the library built from them will hold."""
    queries = [r for r in eval_pool if r.split in EVAL_SPLITS]
    if split != "photos":
        return queries
    return queries + [replace(r, split="key_seen") for r in train_records]


def _usable(record: Record, modalities: list[str]) -> bool:
    return ("image" not in modalities or record.has_image) and ("dna" not in modalities or record.barcode is not None)


def _model(config: TrainConfig, resume: bool) -> CLIBDModel:
    if resume:
        return load_model(Path(config.out) / "last", device="cpu")
    if config.init_from:
        model = load_model(config.init_from, device="cpu")
        missing = sorted(set(config.modalities) - set(model.config.modalities))
        if missing or model.config.preset != config.preset:
            raise ValueError(
                f"{config.init_from} is a {model.config.preset} model with {model.config.modalities}; "
                f"this run asks for {config.preset} with {config.modalities}"
            )
        return model
    return build_model(config.preset, config.modalities, pretrained=True)


def _frozen_parts(model: CLIBDModel, freeze: list[str]) -> list[torch.nn.Module]:
    """Modules whose weights stay fixed. A frozen paper ViT keeps its LoRA and head trainable (CLIBD's recipe)."""
    parts = []
    image = getattr(model, "image_encoder", None)
    if "image_backbone" in freeze and image is not None:
        parts.append(image.backbone if hasattr(image, "backbone") else image.base_image_encoder)
    if "text_backbone" in freeze and hasattr(model, "language_encoder"):
        parts.append(model.language_encoder.base_language_encoder)
    for part in parts:
        part.requires_grad_(False)
    if "image_backbone" in freeze and hasattr(image, "base_image_encoder"):
        for name, parameter in image.base_image_encoder.named_parameters():
            if ".linear_" in name or name.startswith("head."):
                parameter.requires_grad_(True)
    return parts


def _inputs(
    model: CLIBDModel, records: list[Record], cache: FeatureCache, pixels, config: TrainConfig, texts: list[str]
) -> dict:
    """The batch's inputs; ``texts``: the taxonomy texts to embed (the batch's own, or with the taxonomy
    loss every training taxon)."""
    modalities = config.modalities
    inputs: dict[str, object] = {}
    if "image" in modalities:
        cached = cache.image(records)
        inputs.update({"image_backbone": cached} if cached is not None else {"image": pixels})
    if "dna" in modalities:
        inputs["dna"] = model.dna_batch([random_barcode_window(r.barcode, config.dna_crop) for r in records])
    if "text" in modalities:
        cached = cache.text(texts)
        inputs.update({"text_backbone": cached} if cached is not None else {"text": model.text_batch(texts)})
    return inputs


def _loss(outputs: dict, config: TrainConfig, targets: torch.Tensor):
    """CLIBD's loss over the batch, or (taxonomy) each photo's taxon among all training taxa: a softmax
    over the text embeddings of every taxon, so photos of one species are never each other's negatives;
    plus, with a species head, its cross-entropy weighted by ``config.species_head``."""
    features = {k: outputs[k].float() for k in MODALITIES if k in outputs}
    logit_scale = outputs["logit_scale"]
    if config.loss != "taxonomy":
        loss, pairs = clibd_loss(features, logit_scale)
    else:
        logits = logit_scale.exp() * features["image"] @ features["text"].T
        loss = F.cross_entropy(logits, targets.to(logits.device))
        pairs = {"image->taxa": loss.detach()}
    if "species_logits" in outputs:
        head_loss = F.cross_entropy(outputs["species_logits"].float(), targets.to(loss.device))
        loss, pairs = loss + config.species_head * head_loss, {**pairs, "species_head": head_loss.detach()}
    return loss, pairs


def _with_head(model: CLIBDModel, config: TrainConfig, n_taxa: int) -> torch.nn.Module:
    """What the optimiser trains: the model, or the model with a training-only species head."""
    if config.species_head and "image" in config.modalities:
        return WithSpeciesHead(model, n_taxa)
    return model


def bf16_autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast where the config asks for it (``auto``: on a GPU)."""
    wanted = config.mixed_precision == "bf16" or (config.mixed_precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=wanted)


def _save(run_dir: Path, name: str, model: CLIBDModel, config: TrainConfig, state: dict | None = None) -> None:
    """A model directory; frozen lite backbones are stored as references to their packages (small)."""
    packaged = load_preset(config.preset).packaged_parts
    leave_out = [p for p in config.freeze if p in packaged and PRETRAINED_PARTS[p][0] in config.modalities]
    with atomic_directory(run_dir / name) as staging:
        provenance = {"source": "clibd train", "run_dir": str(run_dir), "train_config": asdict(config)}
        model.write_files(staging, provenance=provenance, leave_out=leave_out)
        if state is not None:
            torch.save(state, staging / TRAINING_STATE)


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run (or resume) a training job; returns its final status. Raises on errors, after recording them."""
    run_dir = Path(config.out)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        # the BERT pooler and BarcodeBERT's vocabulary bias take no part in the loss
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        # bf16 is plain autocast (below): Accelerate's process-wide state would pin one precision for
        # every run of a process; fp16 needs its gradient scaler.
        mixed_precision="fp16" if config.mixed_precision == "fp16" else "no",
    )
    is_main = accelerator.is_main_process
    has_checkpoint = (run_dir / "last" / TRAINING_STATE).is_file()
    if has_checkpoint and not resume:
        raise RunExistsError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and not has_checkpoint:
        raise RunExistsError(f"{run_dir} holds no checkpoint to resume")
    if resume:
        config = config.resumed()
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "train_config.json", asdict(config))
    monitor = RunMonitor(run_dir, total_steps=1)
    try:
        return _train(config, resume, accelerator, monitor)
    except Exception as error:
        if is_main:
            (run_dir / "error.log").write_text(traceback.format_exc())
            said = str(error) if isinstance(error, (ValueError, OSError)) else f"the run stopped on an error ({error})"
            monitor.update(state="failed", last_error=f"{said}; the full report is in {run_dir / 'error.log'}")
        raise


def _train(config: TrainConfig, resume: bool, accelerator: Accelerator, monitor: RunMonitor) -> dict:
    run_dir, is_main = Path(config.out), accelerator.is_main_process
    stop = _StopFlag()
    torch.manual_seed(config.seed)
    records = _records(config.data, config.split_seed, config.split, config.split_fold)
    eval_pool = _records(config.val, config.split_seed, config.split, config.split_fold) if config.val else records
    train_records = [r for r in records if r.split in TRAIN_SPLITS and _usable(r, config.modalities)]
    eval_records = _evaluation_pool(eval_pool, train_records, config.split)
    train_texts = record_texts(train_records)
    taxa = sorted(set(train_texts))  # the taxonomy loss's classes
    taxon_of = {text: i for i, text in enumerate(taxa)}
    world = accelerator.num_processes
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} does not divide among {world} processes")
    fitted = fit_to_set(config, len(train_records), world)
    config = fitted.config
    steps_per_epoch = len(train_records) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    model = _model(config, resume)
    frozen = _frozen_parts(model, config.freeze)
    trained = _with_head(model, config, len(taxa))
    head = trained.species_head if isinstance(trained, WithSpeciesHead) else None
    test_records = [r for r in records if r.split in EVAL_SPLITS]
    cache = FeatureCache(model, train_records + eval_records + test_records, config.freeze, config.num_workers)
    optimizer = torch.optim.AdamW(
        [p for p in trained.parameters() if p.requires_grad], lr=config.peak_lr(), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.peak_lr(), total_steps=total_steps, pct_start=config.warmup, anneal_strategy="cos"
    )
    step, best, stale = 0, -1.0, 0  # stale: validations since the best one (early stopping)
    if resume:
        state = torch.load(run_dir / "last" / TRAINING_STATE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, best, stale = int(state["step"]), float(state["best"]), int(state.get("stale", 0))
        if head is not None:
            head.load_state_dict(state["species_head"])
    ddp_model, optimizer = accelerator.prepare(trained, optimizer)
    monitor.total_steps, monitor.first_step = total_steps, step
    if is_main:
        monitor.update(state="running", step=step, total_steps=total_steps, epoch=step // steps_per_epoch)
        for note in fitted.notes:
            monitor.log({"type": "note", "step": step, "note": note})
            tqdm.write(f"fitted to the set: {note}")
    progress = tqdm(total=total_steps, initial=step, disable=not is_main, desc="training", unit="step", mininterval=1.0)

    def checkpoint(name: str, with_state: bool) -> None:
        if is_main:
            state = None
            if with_state:
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "best": best,
                    "stale": stale,
                }
                if head is not None:
                    state["species_head"] = head.state_dict()
            _save(run_dir, name, model, config, state)
        accelerator.wait_for_everyone()

    while step < total_steps:
        epoch = step // steps_per_epoch
        if config.balanced:
            batches = balanced_batches(train_texts, config.batch_size, config.seed, epoch)
        else:
            batches = epoch_batches(len(train_records), config.batch_size, config.seed, epoch)
        batches = batches[step % steps_per_epoch :]
        mine = [shard(batch, accelerator.process_index, world) for batch in batches]
        needs_pixels = "image" in config.modalities and cache.images is None
        loader = DataLoader(
            ImageDataset(train_records, train_transform(load_preset(config.preset).image_transform, config.augment)),
            batch_sampler=BatchListSampler(mine),
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed * 7919 + epoch),  # leaves the global RNG alone
        )
        pixels = iter(loader) if needs_pixels else None
        for indices in mine:
            started = time.time()
            ddp_model.train()
            for part in frozen:
                part.eval()
            batch_records = [train_records[i] for i in indices]
            texts = taxa if config.loss == "taxonomy" else record_texts(batch_records)
            inputs = _inputs(model, batch_records, cache, next(pixels) if pixels else None, config, texts)
            targets = torch.tensor([taxon_of[train_texts[i]] for i in indices])
            with accelerator.autocast(), bf16_autocast(config, accelerator.device):
                loss, pair_losses = _loss(ddp_model(inputs), config, targets)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}")
            if is_main:
                monitor.log(
                    {
                        "type": "train",
                        "step": step,
                        "epoch": epoch,
                        "loss": loss.item(),
                        "pairs": {k: v.item() for k, v in pair_losses.items()},
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": config.batch_size / (time.time() - started),
                        "logit_scale": model.logit_scale.item(),
                    }
                )
                monitor.update(step=step, epoch=epoch, loss=loss.item())
            stop_now = torch.tensor(float(stop.requested), device=accelerator.device)
            if world > 1:
                stop_now = accelerator.reduce(stop_now, reduction="sum")
            if stop_now.item() > 0:
                checkpoint("last", with_state=True)
                if is_main:
                    monitor.update(state="cancelled")
                progress.close()
                return monitor.status
            if step % config.checkpoint_every == 0 and step % steps_per_epoch:
                checkpoint("last", with_state=True)
            if step >= total_steps:
                break
        last = step >= total_steps
        if step % steps_per_epoch == 0 or last:
            validating = last or (step // steps_per_epoch) % config.validate_every == 0
            if is_main and validating:
                model.eval()
                results = evaluate_records(eval_records, record_encoder(model, cache), config.modalities, "val")
                score = mean_top1(results)
                monitor.log({"type": "val", "step": step, "epoch": epoch, "score": score, "results": results})
                if score >= best:  # as good and trained longer: kept
                    best, stale = score, 0
                    _save(run_dir, "best", model, config)
                else:
                    stale += 1
                monitor.update(best_score=best)
            checkpoint("last", with_state=True)
            if config.patience and stale >= config.patience:
                if is_main:
                    monitor.log({"type": "early_stop", "step": step, "epoch": epoch, "best_score": best})
                break
    progress.close()
    if is_main:
        final = load_model(run_dir / "best", device="cpu") if (run_dir / "best").is_dir() else model
        has_test = any(r.split in ("test", "test_unseen") for r in records)  # photos: the user holds the test
        stage = "test" if has_test else "val"
        test = evaluate_records(
            records if has_test else eval_records, record_encoder(final, cache), config.modalities, stage
        )  # frozen backbones: same cache
        write_json(run_dir / "results.json", test)
        (run_dir / "results.md").write_text(
            markdown_table(test, "macro") + "\n\n" + markdown_table(test, "micro") + "\n"
        )
        monitor.log({"type": "test", "step": step, "results": test})
        monitor.update(state="finished", step=step)
    accelerator.wait_for_everyone()
    return json.loads(json.dumps(monitor.status))
