"""The engine: the loop's outputs, and what the combiner and conditioning promise."""

import math
from unittest import mock

import attrs
import pytest
import torch
from torch import Tensor
from conftest import ROOT, TINY
from hypothesis import given, settings
from hypothesis import strategies as st

import vle_kit.model as vle_model
from vle_kit.build import build_model
from vle_kit.decomposition import mask_area
from vle_kit.interfaces import Locator, State
from vle_kit.layers import Up
from vle_kit.recipe import load_recipe
from vle_kit.train import learning_rate


def tiny_model(vanilla, *overrides):
    recipe, registry = load_recipe(vanilla, TINY + list(overrides))
    torch.manual_seed(0)
    return build_model(recipe, registry), recipe


@torch.no_grad()
def nudge(model):
    """Move every weight a little: the step tables and some last layers start at zero, and a
    test of what they do must make every one count."""
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)


def test_sum_combiner_reconstruction_is_the_running_sum_of_parts(vanilla):
    model, _ = tiny_model(vanilla)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out = model(x, 3)
    assert torch.allclose(out.recons, out.parts.cumsum(1), atol=1e-6)
    assert out.masks is None


def test_token_is_as_small_as_the_recipe_says(vanilla):
    model, recipe = tiny_model(vanilla, "model.token.channels=2", "model.token.size=2")
    out = model(torch.zeros(1, 3, 16, 16), 2)
    assert out.tokens.shape == (1, 2, 2, 2, 2)


def test_encoder_knows_how_many_tokens_were_asked_for(vanilla):
    model, _ = tiny_model(vanilla)
    with torch.no_grad():
        model.film_k.weight.normal_()
    x = torch.rand(2, 3, 16, 16)
    assert not torch.allclose(model(x, 1).tokens[:, 0], model(x, 3).tokens[:, 0])


@pytest.mark.parametrize("saliency,combiner", [("{use='none'}", "{use='sum'}"),
                                               ("{use='inherent'}", "{use='masked_fill'}")])
def test_an_encoder_not_told_k_makes_every_prefix_the_shorter_encoding(vanilla, saliency,
                                                                       combiner):
    """Without `tell_k` the first j tokens of a k-token encoding are the j-token encoding, and
    with a filling combiner so is the reconstruction after them: asked-for-j is the j-prefix."""
    model, _ = tiny_model(vanilla, "model.tell_k=false", f"model.saliency={saliency}",
                          f"model.combiner={combiner}")
    nudge(model)
    assert model.film_k is None
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        long = model(x, 3)
        for j in (1, 2):
            short = model(x, j)
            assert torch.allclose(short.tokens, long.tokens[:, :j], atol=1e-6)
            assert torch.allclose(short.recons[:, -1], long.recons[:, j - 1], atol=1e-5)


def test_memory_carries_information_across_steps(vanilla):
    """With memory, step 2 depends on step 1's input even when its own input is the same."""
    model, _ = tiny_model(vanilla, "model.composer.use=masked_residual")
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    # masked_residual without masks feeds x at every step, so only memory differs
    with torch.no_grad():
        model.film_step.weight.zero_()
    a, b = model(x1, 2).tokens, model(x2, 2).tokens
    assert not torch.allclose(a[:, 1], b[:, 1])
    model_nomem, _ = tiny_model(vanilla, "model.composer.use=masked_residual",
                                "model.memory={use = 'none'}")
    t = model_nomem(x1, 2).tokens
    assert torch.allclose(t[:, 0], t[:, 1])


@pytest.mark.parametrize("end", [0.1, 0.0, 0.01])
def test_learning_rate_warms_up_then_decays_to_its_end(vanilla, end):
    _, recipe = tiny_model(vanilla, "train.steps=100", "train.warmup=10", "train.lr=1.0",
                           f"train.lr_end={end}")
    lrs = [learning_rate(s, recipe.train) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert abs(lrs[-1] - end) < 1e-3


def test_gaussian_token_samples_in_training_and_takes_the_mean_in_eval(vanilla):
    model, _ = tiny_model(vanilla, "model.token.gaussian=true")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    model.train()
    a, b = model(x, 2), model(x, 2)
    assert not torch.equal(a.tokens, b.tokens), "training draws from the token's Gaussian"
    assert a.kl.shape == (2, 2) and (a.kl >= 0).all()
    model.eval()
    assert torch.equal(model(x, 2).tokens, model(x, 2).tokens)


def test_gaussian_token_kl_is_zero_at_the_prior():
    from vle_kit.model import gaussian_token

    z, kl = gaussian_token(torch.zeros(3, 8, 2, 2), sample=False)
    assert torch.equal(z, torch.zeros(3, 4, 2, 2)) and torch.allclose(kl, torch.zeros(3))
    _, kl = gaussian_token(torch.full((1, 8, 2, 2), 50.0), sample=True)
    assert torch.isfinite(kl).all()


def test_more_tokens_than_trained_reuse_the_last_conditioning(vanilla):
    model, _ = tiny_model(vanilla)  # tokens.max = 3
    out = model(torch.zeros(1, 3, 16, 16), 6)
    assert out.recons.shape[1] == 6 and torch.isfinite(out.recons).all()


def three_steps(trainer) -> tuple[list[float], dict]:
    return [trainer.train_step()["loss"] for _ in range(3)], trainer.model.state_dict()


def assert_same_training(a: tuple[list[float], dict], b: tuple[list[float], dict], lr: float):
    """The same losses, and weights within 5% of the learning rate (what an Adam step moves a
    weight by; a wrong gradient moves it by the whole of it): kernels round differently, and
    Adam's first steps magnify that where gradients are near zero (1.3e-5 on an AVX-512
    host, 5.6e-5 on one thread of an AVX2-only one, where a different kernel runs)."""
    (losses_a, weights_a), (losses_b, weights_b) = a, b
    assert losses_a == pytest.approx(losses_b, rel=1e-5)
    assert max((weights_a[k] - weights_b[k]).abs().max().item() for k in weights_a) < 0.05 * lr


def test_channels_last_trains_to_the_same_weights(vanilla, tmp_path):
    from vle_kit.runs import RunDir
    from vle_kit.train import Trainer

    trained = []
    for channels_last in (False, True):
        # the layout alone: with the recipe's flips, Adam's first steps on the linear maps'
        # near-zero gradients magnify float differences (7e-5 here)
        recipe, registry = load_recipe(vanilla, TINY + ["train.augment=[]",
                                                        f"train.channels_last={channels_last}"
                                                        .lower()])
        trained.append(three_steps(Trainer(recipe, registry, RunDir(tmp_path))))
    assert_same_training(*trained, recipe.train.lr)


@pytest.mark.parametrize("recipe", ["vanilla", "vae", "saliency", "constructor", "inherent"])
def test_every_model_compiles_and_trains_to_the_eager_weights(recipe, tmp_path):
    """`train.compile`: the graph torch.compile captures is the model's, plug-ins included
    (an attrs object built in the forward pass once stopped the capture). Captured and
    differentiated without inductor's C++ kernels, which would take minutes here; a recipe of
    each model family (the others differ from these in data and training only)."""
    from vle_kit.runs import RunDir
    from vle_kit.train import Trainer

    torch._dynamo.reset()  # graphs of other tests' models count towards the recompile limit
    compile_ = torch.compile
    trained = []
    for compiled in (False, True):
        # TINY sizes a memory, which the VAE has none of
        memory = ["model.memory={use='none'}"] if recipe == "vae" else []
        resolved, registry = load_recipe(ROOT / "recipes" / f"{recipe}.toml",
                                         [*TINY, *memory, f"train.compile={str(compiled).lower()}"])
        with (mock.patch.object(torch, "compile", lambda net: compile_(
                  net, backend="aot_eager", fullgraph=True)),
              mock.patch("vle_kit.train.cpp_compiler", return_value="c++")):  # none needed
            trainer = Trainer(resolved, registry, RunDir(tmp_path))
            assert (trainer.net is not trainer.model) == compiled
            trained.append(three_steps(trainer))
    assert_same_training(*trained, resolved.train.lr)


def test_without_a_cpp_compiler_compile_trains_uncompiled_and_says_so(vanilla, tmp_path,
                                                                      capsys):
    from vle_kit.runs import RunDir
    from vle_kit.train import Trainer

    recipe, registry = load_recipe(vanilla, TINY + ["train.compile=true"])
    with mock.patch("vle_kit.train.cpp_compiler", return_value=None):
        trainer = Trainer(recipe, registry, RunDir(tmp_path))
    assert trainer.net is trainer.model
    assert "no C++ compiler" in capsys.readouterr().out


def test_the_fused_optimiser_trains_to_the_weights_of_the_per_tensor_one(vanilla, tmp_path):
    from vle_kit.runs import RunDir
    from vle_kit.train import Trainer

    recipe, registry = load_recipe(vanilla, TINY)
    fused, plain = Trainer(recipe, registry, RunDir(tmp_path)), Trainer(recipe, registry,
                                                                        RunDir(tmp_path))
    assert fused.optimizer.defaults["fused"]
    plain.optimizer = torch.optim.AdamW(plain.model.parameters(), lr=recipe.train.lr,
                                        weight_decay=0.0, foreach=False)
    assert_same_training(three_steps(fused), three_steps(plain), recipe.train.lr)


def test_a_checkpoint_of_an_unfused_optimiser_resumes_fused(vanilla, tmp_path):
    """Checkpoints from before the fused optimiser (or from a device without it) keep their
    optimiser's moments; the kernel is chosen by the machine that resumes."""
    from vle_kit.runs import RunDir
    from vle_kit.train import Trainer

    recipe, registry = load_recipe(vanilla, TINY)
    saver = Trainer(recipe, registry, RunDir(tmp_path))
    saver.train_step()
    state = saver.state()
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None
    resumed = Trainer(recipe, registry, RunDir(tmp_path))
    resumed.restore(state)
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    moments = resumed.optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, saver.optimizer.state_dict()["state"][0]["exp_avg"])
    resumed.train_step()


DECODERS = [["model.decoder={use='plain'}"],  # whole tables: vanilla.toml's has step_film
            ["model.decoder={use='plain', step_film=true}"],
            ["model.decoder={use='plain', step_film=true, linear=true}"],
            ["model.decoder={use='plain', fine=8}"],
            ["model.decoder={use='plain', unfold=4}"],
            ["model.decoder={use='plain', unfold=4, unfold_hidden=8}"],
            ["model.decoder={use='context'}"],
            ["model.decoder={use='broadcast'}"],
            ["model.decoder={use='context', memory=false}"],
            ["model.decoder={use='context', recon=false}"],
            ["model.decoder={use='context', whole=true}"]]


def test_four_by_four_folds_skip_the_half_resolution_convolutions(vanilla):
    """model.fold = 4 and the plain decoder's unfold = 4 enter and leave the image through
    4 x 4 pixel blocks: no convolution runs between the image's and the memory's resolution,
    and the shapes are those of the 2 x 2 folds."""
    sizes = ["model.token.size=2"]  # 16 px images: the memory at 4 x 4, a quarter of them
    folded, _ = tiny_model(vanilla, *sizes, "model.fold=4",
                           "model.decoder={use='plain', unfold=4}")
    plain, _ = tiny_model(vanilla, *sizes, "model.decoder={use='plain'}")
    seen = []
    for module in folded.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out, reference = folded(x, 3), plain(x, 3)
    assert max(seen) == 4
    assert out.recons.shape == reference.recons.shape == (2, 3, 3, 16, 16)
    assert folded.stem(x).shape == plain.stem(x).shape


@pytest.mark.parametrize("decoder", ["plain", "context", "broadcast"])
def test_narrowest_is_the_fewest_channels_at_the_finest_levels(vanilla, decoder):
    """model.narrowest lets the stem and the decoders halve their channels at each doubling
    of resolution below 32 (at 32 px, width 16: 8 at 16 x 16 in the stem, 8 then 4 on the way
    up), with the image's shapes unchanged."""
    sizes = ["model.width=16", "data.size=32", f"model.decoder={{use='{decoder}'}}"]
    narrow, _ = tiny_model(vanilla, *sizes, "model.narrowest=4")
    usual, _ = tiny_model(vanilla, *sizes)

    def ups(model):
        return [m[1].out_channels for m in model.decoder.modules() if isinstance(m, Up)]
    doublings = 1 if decoder == "broadcast" else 2  # broadcast starts at a quarter of the image
    assert ups(usual) == [32, 32][:doublings] and ups(narrow) == [8, 4][:doublings]
    assert narrow.stem[1].out_channels == 8 and usual.stem[1].out_channels == 32
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert narrow(x, 2).recons.shape == usual(x, 2).recons.shape == (2, 2, 3, 32, 32)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in usual.parameters())


NO_PLACE, PLACED = "{use='none'}", "{use='residual_peak', radius=3.0}"
FITTED = "{use='residual_extent'}"
SHOWN = "{use='residual_extent', show_region=true, pool=5, pass_taken=true}"  # inherent.toml's
MASK_MODELS = [("{use='inherent'}", "{use='masked_sum'}", NO_PLACE),
               ("{use='inherent'}", "{use='masked_fill'}", NO_PLACE),
               ("{use='inherent', min_area=0.2}", "{use='masked_fill'}", NO_PLACE),  # drops masks
               ("{use='inherent', claims_from=2}", "{use='masked_fill'}", NO_PLACE),  # scene first
               ("{use='inherent', scope=false}", "{use='paint'}", NO_PLACE),
               ("{use='inherent', scope=false}", "{use='paint', over='first'}", NO_PLACE),
               ("{use='conv'}", "{use='masked_sum'}", NO_PLACE),
               ("{use='conv'}", "{use='masked_fill'}", NO_PLACE),
               ("{use='conv', scope=false}", "{use='paint'}", NO_PLACE),
               ("{use='deconstructor'}", "{use='constructor'}", NO_PLACE),
               ("{use='deconstructor'}", "{use='constructor', fill=true}", NO_PLACE),
               ("{use='inherent'}", "{use='masked_fill'}", PLACED),  # tokens claim near a place
               ("{use='conv'}", "{use='masked_fill'}", PLACED),
               ("{use='inherent'}", "{use='masked_fill'}", FITTED),  # windows fit the objects
               ("{use='inherent'}", "{use='masked_fill'}", SHOWN)]  # the encoder sees the object


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: " ".join(d))
@pytest.mark.parametrize("token", [("false", "false"), ("true", "false"), ("true", "true")],
                         ids=lambda t: f"gain={t[0]} linear={t[1]}")
@pytest.mark.parametrize("saliency,combiner,locator",
                         [("{use='none'}", "{use='sum'}", NO_PLACE), *MASK_MODELS])
def test_every_prefix_decodes_exactly(vanilla, decoder, token, saliency, combiner, locator):
    """Whatever the decoder sees follows from the tokens: decoding the first j tokens gives the
    encoding's reconstruction after j tokens (with the saved masks for a head that reads the
    image)."""
    model, _ = tiny_model(vanilla, *decoder, f"model.token.gain={token[0]}",
                          f"model.token.linear={token[1]}",
                          f"model.saliency={saliency}", f"model.combiner={combiner}",
                          f"model.locator={locator}")
    model.eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    nudge(model)
    with torch.no_grad():
        out = model(x, 3)
    for j in (1, 2, 3):
        masks = None if model.saliency.from_tokens else out.masks[:, :j]
        decoded = model.decode(out.tokens[:, :j], 3, masks)
        assert torch.allclose(decoded.recons, out.recons[:, :j], atol=1e-5)


@pytest.mark.parametrize("saliency,combiner,locator", MASK_MODELS)
@settings(deadline=None, max_examples=10)
@given(k=st.integers(1, 6), seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 1e-3, 1e3]))
def test_mask_model_prefixes_are_finite_and_masks_sum_to_at_most_one(saliency, combiner, locator,
                                                                     k, seed, scale):
    """Any K, any weights: every prefix reconstruction is finite and the running mask sum stays
    in [0, 1] (scaled weights push the mask logits to saturation or to zero)."""
    model, _ = tiny_model(ROOT / "recipes" / "vanilla.toml", f"model.saliency={saliency}",
                          f"model.combiner={combiner}", f"model.locator={locator}")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.saliency.parameters():
            p.mul_(scale)
        out = model(torch.rand(2, 3, 16, 16) * 2 - 1, k)
    assert torch.isfinite(out.recons).all()
    running = out.masks.cumsum(1)
    assert (out.masks >= 0).all() and (running <= 1 + 1e-5).all()


def test_a_placed_token_carries_its_place_and_claims_only_near_it(vanilla):
    """`residual_peak` puts the first token on the object (a bright square on a dark scene),
    its place is the token's first two floats, and every mask but the last is within its
    token's window."""
    model, _ = tiny_model(vanilla, "model.saliency={use='inherent'}",
                          "model.combiner={use='masked_fill'}", f"model.locator={PLACED}")
    x = torch.full((2, 3, 16, 16), -1.0)
    x[0, :, 1:8, 1:8], x[1, :, 8:15, 7:14] = 1, 1  # 7 x 7: one place holds all of it
    nudge(model)
    with torch.no_grad():
        out = model(x, 3)
    places = [out.tokens[:, t].flatten(1)[:, :2] for t in range(3)]
    pixel = ((places[0] + 1) / 2 * 15).round()
    assert pixel.tolist() == [[4.0, 4.0], [10.0, 11.0]]  # (x, y): the squares' centres
    for t in (0, 1):
        window = model.locator.window(places[t], x)
        assert (out.masks[:, t] <= window + 1e-6).all()
    assert model.locator.placed(attrs.evolve(State.start(x, 3), step=1))
    assert not model.locator.placed(attrs.evolve(State.start(x, 3), step=2))  # takes the rest


def peak_window(x: float, y: float, radius: float) -> tuple[Locator, Tensor]:
    from vle_kit_plugins.locator_residual_peak import ResidualPeakLocator

    return ResidualPeakLocator(ResidualPeakLocator.Config(radius=radius), None), torch.tensor(
        [[x, y]])


def fitted_window(x: float, y: float, radius: float) -> tuple[Locator, Tensor]:
    from vle_kit_plugins.locator_residual_extent import ResidualExtentLocator

    return ResidualExtentLocator(ResidualExtentLocator.Config(), None), torch.tensor(
        [[x, y, radius / 15.5]])


@pytest.mark.parametrize("make", [peak_window, fitted_window])
@settings(deadline=None, max_examples=50)
@given(x=st.floats(-1, 1), y=st.floats(-1, 1), radius=st.floats(1, 12))
def test_a_window_is_whole_at_its_place_and_empty_far_from_it(make, x, y, radius):
    """Whole to 0.9 of its radius around the place (a fitted window's radius travels in the
    place), nearly empty from 1.75 radii, all ones without a place."""
    locator, place = make(x, y, radius)
    window = locator.window(place, torch.zeros(1, 3, 32, 32))[0, 0]
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    d = ((cols - (x + 1) / 2 * 31) ** 2 + (rows - (y + 1) / 2 * 31) ** 2).sqrt()
    assert ((window >= 0) & (window <= 1)).all()
    assert (window[d <= 0.9 * radius] == 1).all()
    assert (window[d >= 1.75 * radius] < 1e-3).all()
    assert torch.equal(locator.window(None, window[None, None]), torch.ones(1, 1, 32, 32))


@settings(deadline=None, max_examples=50)
@given(x=st.floats(-1, 1), y=st.floats(-1, 1), radius=st.floats(1, 14))
def test_a_window_skips_no_value_where_it_skips_the_exponential(x, y, radius):
    """`flat_window` leaves out the exponential where it underflows: its values and its
    gradient are bitwise those of min(1, 2 exp(-(d / radius)^4)) computed at every pixel."""
    from vle_kit_plugins.locator_residual_peak import flat_window, squared_distance

    like = torch.zeros(1, 3, 32, 32)
    centre = torch.tensor([[x, y]], requires_grad=True)
    weights = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    r = torch.tensor([radius])
    window = flat_window(centre, r, like)
    plain = (2 * torch.exp(-(squared_distance(centre, like) / r ** 2) ** 2)).clamp(max=1)
    assert torch.equal(window, plain[:, None])
    grads = [torch.autograd.grad((w.view(1, 1, 32, 32) * weights).sum(), centre)[0]
             for w in (window, plain)]
    assert torch.equal(*grads)


def test_a_fitted_window_holds_its_object_and_not_its_neighbour():
    """`residual_extent` centres the window on the object the peak is in and sizes it to
    that object: the 7 x 7 square whole, the other square, 6 pixels beyond it, outside."""
    from vle_kit_plugins.locator_residual_extent import ResidualExtentLocator

    x = torch.full((1, 3, 32, 32), -1.0)
    x[0, 0, 4:11, 4:11] = 1  # red, centre (7, 7)
    x[0, 1, 4:11, 20:27] = 1  # green, centre (23, 7)
    locator = ResidualExtentLocator(ResidualExtentLocator.Config(), None)
    place, _ = locator.place(State.start(x, 3))
    window = locator.window(place, x)[0, 0]
    pixel = (place[0, :2] + 1) / 2 * 31
    mine, other = (slice(4, 11), slice(4, 11)), (slice(4, 11), slice(20, 27))
    if pixel[0] > 16:  # the tie went to the green square
        mine, other = other, mine
    assert torch.allclose(pixel, torch.tensor([(mine[1].start + 3.0), 7.0]))
    assert (window[mine] == 1).all() and (window[other] < 1e-3).all()
    assert 6 < locator.radius(place, x)[0] < 7.5  # the square's corner 4.2 pixels out, 2 of margin


@pytest.mark.parametrize("pool,found", [(7, "square"), (1, "strip")])
def test_the_pool_decides_whether_a_strip_or_a_broad_object_comes_first(pool, found):
    """A 6 x 6 square and a 2-pixel strip of twice its energy a pixel: averaged over 7 x 7
    pixels the square holds more, pixel by pixel the strip does; the place is the centre of
    what the peak fell in."""
    from vle_kit_plugins.locator_residual_extent import ResidualExtentLocator

    x = torch.full((1, 3, 32, 32), -1.0)
    x[0, 0, 4:10, 4:10] = 1  # the square: one channel 2 from the ground
    x[0, 1:, 20:22, 10:20] = 1  # the strip: two channels
    locator = ResidualExtentLocator(ResidualExtentLocator.Config(pool=pool), None)
    place, _ = locator.place(State.start(x, 3))
    centre = {"square": [6.5, 6.5], "strip": [14.5, 20.5]}[found]  # (x, y)
    assert torch.allclose((place[0, :2] + 1) / 2 * 31, torch.tensor(centre))


@pytest.mark.parametrize("pass_taken,found", [(False, "remnant"), (True, "blue")])
def test_pass_taken_leaves_what_a_token_left_of_its_object_to_the_last(pass_taken, found):
    """A mask holds most of a red square; the two columns it left are red still, and beside them
    a fainter blue square. The peak falls on the red remnant, or, passing over the colour an
    earlier mask has taken, on the blue square (pixel by pixel: a 7 x 7 pool's peak could fall
    on the ground beside the thin remnant)."""
    from vle_kit_plugins.locator_residual_extent import ResidualExtentLocator

    x = torch.full((1, 3, 32, 32), -1.0)
    x[0, 0, 4:11, 4:11] = 1  # red
    x[0, 2, 20:26, 20:26] = -0.2  # blue, 0.8 from the ground
    state = State.start(x, 3)
    held = torch.zeros(1, 1, 32, 32)
    held[0, 0, 4:11, 4:9] = 1  # the red square but for its last two columns
    state.masks.append(held)
    state.mask_sum = held.clone()
    cfg = ResidualExtentLocator.Config(pool=1, pass_taken=pass_taken)
    locator = ResidualExtentLocator(cfg, None)
    place, _ = locator.place(state)
    centre = {"remnant": [9.5, 7.0], "blue": [22.5, 22.5]}[found]  # (x, y)
    assert torch.allclose((place[0, :2] + 1) / 2 * 31, torch.tensor(centre))


@given(seed=st.integers(0, 2**16))
def test_the_colours_passed_over_are_remembered_and_follow_the_images_kept(seed):
    """`pass_taken` finds each mask's colours once and keeps them in state.locator_memory: at
    every step, and after an image leaves the batch (`State.take`, as in `VLE.encode`), the
    peak passes over what finding every earlier mask's colours afresh gives."""
    import torch.nn.functional as F

    from vle_kit_plugins.locator_residual_peak import PeakConfig, passed

    g = torch.Generator().manual_seed(seed)
    blocks = F.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=32)  # 16 colours
    state, cfg = State.start(blocks, 6), PeakConfig(pass_taken=True)
    for step in range(5):
        if step == 2:
            state = state.take(torch.tensor([True, False, True, True]))
        fresh = passed(attrs.evolve(state, locator_memory=None), cfg)
        assert torch.equal(passed(state, cfg), fresh)
        assert state.locator_memory is None or state.locator_memory[1] == len(state.masks)
        held = F.interpolate((torch.rand(len(state.x), 1, 4, 4, generator=g) > 0.7).float(),
                             size=32)  # whole blocks, held above one half but not wholly
        mask = held * (0.55 + 0.4 * torch.rand(len(state.x), 1, 1, 1, generator=g))
        state.masks.append(mask)
        state.mask_sum = (state.mask_sum + mask).clamp(max=1)


def test_a_shown_region_is_the_found_object_beside_the_window():
    """With `show_region` the encoder's second plane is the object the peak is in: its colour's
    pixels near the peak that no mask holds, not its neighbour of another colour nor a square
    of its colour a mask holds; all ones at the last step, which has no place."""
    from vle_kit_plugins.locator_residual_extent import ResidualExtentLocator

    x = torch.full((1, 3, 32, 32), -1.0)
    x[0, 0, 4:11, 4:11] = 1  # red: the peak
    x[0, 2, 6:9, 11:14] = 1  # a small blue square touching it
    x[0, 0, 13:18, 4:11] = 1  # red again, near, but held by a mask
    state = State.start(x, 3)
    state.mask_sum[0, 0, 13:18, 4:11] = 1
    locator = ResidualExtentLocator(ResidualExtentLocator.Config(show_region=True), None)
    place, planes = locator.place(state)
    expected = torch.zeros(32, 32)
    expected[4:11, 4:11] = 1
    assert locator.extra_channels == 2 and planes.shape == (1, 2, 32, 32)
    assert torch.equal(planes[0, 0], locator.window(place, x)[0, 0])
    assert torch.equal(planes[0, 1], expected)
    assert torch.equal(locator.unplaced_planes(x), torch.ones(1, 2, 32, 32))


@pytest.mark.parametrize("saliency,combiner,locator",
                         [("{use='none'}", "{use='sum'}", NO_PLACE), *MASK_MODELS])
@settings(deadline=None, max_examples=10)
@given(k=st.integers(1, 8), seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 3.0, 10.0]))
def test_an_overshooting_decoder_cannot_blow_up_the_residual_loop(saliency, combiner, locator,
                                                                  k, seed, scale):
    """Decoder weights scaled up make every part overshoot and each residual larger than the
    last (the NaN of a 12000-step `placed` run): parts stay within PART_BOUND, reconstructions
    and the loss finite, for any K."""
    from vle_kit.objective import objective

    model, recipe = tiny_model(ROOT / "recipes" / "vanilla.toml", f"model.saliency={saliency}",
                               f"model.combiner={combiner}", f"model.locator={locator}",
                               "train.loss='log_mse'", "train.rise=3.0")
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(scale)
        out = model(x, k)
    assert out.parts.abs().max() <= vle_model.PART_BOUND
    assert torch.isfinite(out.recons).all()
    assert torch.isfinite(objective(out, x, recipe, 0, [])["loss"])


def test_gain_tokens_carry_the_scale_of_what_the_encoder_saw(vanilla):
    from vle_kit.model import rms

    model, _ = tiny_model(vanilla, "model.token.gain=true")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(x, 2)
    assert torch.allclose(rms(out.tokens[:, 0]).flatten(), rms(x).flatten(), rtol=1e-4)
    residual = x - out.recons[:, 0]
    assert torch.allclose(rms(out.tokens[:, 1]).flatten(), rms(residual).flatten(), rtol=1e-4)


@pytest.mark.parametrize("gaussian", [False, True])
def test_linear_maps_are_one_per_step(vanilla, gaussian):
    """Step t's token adds step t's linear map of what the encoder sees, and its part step t's
    linear map of the token; a K-token pass trains the maps of its K steps and leaves the
    others without a gradient."""
    model, _ = tiny_model(vanilla, "model.token.linear=true", "model.decoder.linear=true",
                          f"model.token.gaussian={str(gaussian).lower()}")
    model.eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        before = model(x, 3)
        model.linear.maps[1].normal_()
        model.decoder.linear.maps[2].normal_()
        after = model(x, 3)
    assert torch.equal(before.tokens[:, 0], after.tokens[:, 0])
    assert not torch.allclose(before.tokens[:, 1], after.tokens[:, 1])
    decoded = model.decode(before.tokens, 3).parts
    assert torch.equal(decoded[:, :2], before.parts[:, :2])
    assert not torch.allclose(decoded[:, 2], before.parts[:, 2])
    model.train()
    model(x, 2).recons[:, -1].square().mean().backward()
    for maps in model.linear.maps, model.decoder.linear.maps:
        assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps[:2])
        assert all(m.grad is None for m in maps[2:])


def test_log_mse_loss_weighs_each_step_by_its_relative_error(vanilla):
    from vle_kit.model import Output
    from vle_kit.objective import objective

    _, recipe = tiny_model(vanilla, "train.loss='log_mse'")
    x = torch.zeros(1, 3, 2, 2)
    recons = torch.stack([torch.full_like(x, 0.5), torch.full_like(x, 0.05)], 1)
    out = Output(recons, recons, recons.requires_grad_(), None)
    terms = objective(out, x, recipe, step=0)
    assert terms["final"].item() == pytest.approx(torch.log(torch.tensor(0.0025)).item())
    terms["loss"].backward()
    grad = recons.grad.abs().sum(dim=(0, 2, 3, 4))
    # d log(e^2) / de = 2 / e: the small error of step 2 gets the larger gradient
    assert grad[1] > grad[0]


def test_step_weights_scale_each_steps_term(vanilla):
    """train.step_weights multiplies step t's term (weights past K unused, steps past the
    weights at 1): a step of weight 0 gets its gradient from the final term only, and the
    weights are not renormalised."""
    from vle_kit.model import Output
    from vle_kit.objective import objective

    _, recipe = tiny_model(vanilla, "train.loss='mse'", "train.step_weights=[2.0, 0.0, 0.5]")
    x = torch.zeros(1, 3, 2, 2)
    recons = torch.stack([torch.full_like(x, 0.5), torch.full_like(x, 0.1)], 1)
    out = Output(recons, recons, recons.requires_grad_(), None)
    terms = objective(out, x, recipe, step=0)
    assert terms["steps"].item() == pytest.approx((2 * 0.25 + 0 * 0.01) / 2)
    terms["loss"].backward()
    # d/dr of final (0.1^2) only: 2 r / 12 values, then the mean over 3 x 2 x 2 values of step 2
    assert torch.allclose(recons.grad[:, 1], torch.full_like(x, 2 * 0.1 / 12))
    _, first_only = tiny_model(vanilla, "train.loss='mse'", "train.step_weights=[2.0]")
    steps = objective(Output(recons, recons, recons.detach(), None), x, first_only, step=0)["steps"]
    assert steps.item() == pytest.approx((2 * 0.25 + 1 * 0.01) / 2)


@settings(deadline=None)
@given(st.lists(st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=6), min_size=1, max_size=4)
       .filter(lambda rows: len({len(r) for r in rows}) == 1),
       st.sampled_from(("mse", "log_mse", "log_mse_image")))
def test_rise_is_zero_when_every_token_helps_and_pushes_only_the_rising_steps(rows, loss):
    """train.rise: zero for errors that never rise; otherwise positive, with gradient only
    on the later error of each rising pair (never on the first step's, never pushing an error
    up); the log forms do not depend on the errors' scale."""
    from vle_kit.objective import image_rise, in_loss_units

    errors = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    units, scale = in_loss_units(errors, loss)
    rise = image_rise(units, scale)
    # rising as the loss sees it: the log of two errors an ulp apart can be one number
    rising = units[:, 1:] > units[:, :-1]
    assert rise.item() >= 0
    assert (rise.item() > 0) == bool(rising.any())
    falling = torch.sort(errors.detach(), dim=1, descending=True).values
    assert image_rise(*in_loss_units(falling, loss)).item() == 0
    if rising.any():
        rise.backward()
        assert (errors.grad[:, 0] == 0).all()
        assert (errors.grad[:, 1:][rising] > 0).all() and (errors.grad[:, 1:][~rising] == 0).all()
    if loss != "mse":
        assert image_rise(*in_loss_units(errors.detach() * 7, loss)).item() == pytest.approx(
            rise.item())


def test_rise_enters_the_loss_with_its_weight(vanilla):
    from vle_kit.model import Output
    from vle_kit.objective import objective

    x = torch.zeros(2, 3, 2, 2)
    recons = torch.stack([torch.full_like(x, 0.1), torch.full_like(x, 0.3)], 1)  # error rises
    out = Output(recons, recons, recons, None)
    _, off = tiny_model(vanilla, "train.loss='mse'")
    _, on = tiny_model(vanilla, "train.loss='mse'", "train.rise=2.0")
    assert "rise" not in objective(out, x, off, step=0)
    terms = objective(out, x, on, step=0)
    assert terms["rise"].item() == pytest.approx(0.09 - 0.01)
    assert (terms["loss"] - objective(out, x, off, step=0)["loss"]).item() == pytest.approx(
        2 * (0.09 - 0.01))


@pytest.mark.parametrize("saliency,combiner", [("{use='inherent'}", "{use='masked_fill'}"),
                                               ("{use='deconstructor'}",
                                                "{use='constructor', fill=true}")])
def test_filling_prefixes_are_whole_images_and_the_last_token_matches_masked_sum(vanilla, saliency,
                                                                                 combiner):
    """After k tokens, what the masks claimed keeps its parts and the newest part fills the
    rest; after K tokens (the last takes the rest) it equals masked_sum. (The constructor's
    merge starts at zero, so untrained it is exactly this.)"""
    fill, _ = tiny_model(vanilla, f"model.saliency={saliency}", f"model.combiner={combiner}")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = fill(x, 3)
    masks, parts = out.masks, out.parts
    for t in range(3):
        claimed = (masks[:, :t] * parts[:, :t]).sum(1)
        rest = 1 - masks[:, :t].sum(1)
        assert torch.allclose(out.recons[:, t], claimed + rest * parts[:, t], atol=1e-5)
    assert torch.allclose(out.recons[:, -1], (masks * parts).sum(1), atol=1e-5)


@pytest.mark.parametrize("over", ["all", "first"])
def test_painted_masks_partition_the_image_and_weigh_the_parts(vanilla, over):
    """`paint`: the first token draws the whole image, each later one paints over it where its
    mask is, and each mask holds what later ones left of it: after every prefix the masks sum
    to one and the reconstruction is the parts weighted by them."""
    model, _ = tiny_model(vanilla, "model.saliency={use='inherent', scope=false}",
                          f"model.combiner={{use='paint', over='{over}'}}")
    nudge(model)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(x, 3)
    assert torch.equal(out.recons[:, 0], out.parts[:, 0])
    assert torch.allclose(out.masks.sum(1), torch.ones(2, 1, 16, 16), atol=1e-6)
    assert torch.allclose(out.recons[:, -1], (out.masks * out.parts).sum(1), atol=1e-5)
    for j in (1, 2):
        prefix = model.decode(out.tokens[:, :j], 3)
        assert torch.allclose(prefix.masks.sum(1), torch.ones(2, 1, 16, 16), atol=1e-6)
        assert torch.allclose(prefix.recons[:, -1], (prefix.masks * prefix.parts).sum(1),
                              atol=1e-5)


@pytest.mark.parametrize("combiner", ["masked_fill", "paint"])
def test_an_adaptive_encoding_keeps_the_masks_its_prefix_decodes_to(vanilla, combiner):
    """Stopped at a length (here before a small mask), an image's saved masks are those its
    tokens decode to, also where later masks paint over earlier ones."""
    model, _ = tiny_model(vanilla, f"model.saliency={{use='inherent', sharpness=20, "
                                   f"scope={str(combiner != 'paint').lower()}}}",
                          f"model.combiner.use={combiner}")
    model.eval()
    nudge(model)
    with torch.no_grad():
        x = torch.rand(6, 3, 16, 16) * 2 - 1
        tokens = model(x, 4).tokens  # each token's mask as it arrives, before any paints over it
        newest = [model.decode(tokens[:, :t + 1], 4).masks[:, t] for t in (1, 2, 3)]
        areas = mask_area(torch.stack(newest, 1))
        encoding = model.encode(x, 4, min_mask=areas.median().item())
    assert len(encoding.lengths.unique()) > 1
    for i, length in enumerate(encoding.lengths.tolist()):
        decoded = model.decode(encoding.tokens[i:i + 1, :length], 4)
        assert torch.allclose(encoding.masks[i, :length], decoded.masks[0], atol=1e-6)
        assert torch.allclose(encoding.recons[i], decoded.recons[0, -1], atol=1e-5)


def test_painting_over_the_first_token_takes_only_what_it_holds(vanilla):
    """With over = "first" a later token paints only where the first token's share is: its
    mask, when it arrives, is nowhere above that share (so earlier objects are not repainted),
    while over = "all" paints past it."""
    shares = {}
    for over in ("all", "first"):
        model, _ = tiny_model(vanilla, "model.saliency={use='inherent', scope=false}",
                              f"model.combiner={{use='paint', over='{over}'}}")
        torch.manual_seed(0)
        nudge(model)
        with torch.no_grad():
            tokens = model(torch.rand(2, 3, 16, 16) * 2 - 1, 4).tokens
            masks = [model.decode(tokens[:, :j], 4).masks for j in (1, 2, 3, 4)]
        shares[over] = [(masks[j][:, j] - masks[j - 1][:, 0]).max().item() for j in (1, 2, 3)]
    assert max(shares["first"]) <= 1e-6 < max(shares["all"])


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: " ".join(d))
@settings(deadline=None, max_examples=8)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 3), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_a_decoder_draws_each_image_from_its_own_tokens(decoder, seed, k, scale):
    """Any tokens, tiny, ordinary or huge: every part and reconstruction is finite, and an
    image's parts do not depend on the other images of its batch (to float rounding, relative
    to the largest value drawn: kernels may sum in another order for another batch size).
    Read with PART_BOUND lifted: a clamped part no longer shows the scale its rounding has."""
    model, _ = tiny_model(ROOT / "recipes" / "vanilla.toml", *decoder,
                          "model.saliency={use='inherent', scope=false}",
                          "model.combiner.use=paint")
    model.eval()
    torch.manual_seed(seed)
    shape = model(torch.zeros(1, 3, 16, 16), 1).tokens.shape[2:]
    tokens = torch.randn(3, k, *shape) * scale
    with mock.patch.object(vle_model, "PART_BOUND", math.inf):
        together = model.decode(tokens, k)
        alones = [model.decode(tokens[i:i + 1], k) for i in range(3)]
    assert torch.isfinite(together.parts).all() and torch.isfinite(together.recons).all()
    for i, alone in enumerate(alones):
        largest = together.parts[i].abs().max()
        assert (alone.parts[0] - together.parts[i]).abs().max() <= 1e-4 * (1 + largest)
