import io

import numpy as np
import pytest
from PIL import Image
from reference_transforms import ARCHS, EXPECTED, STRIDE, crop_digest

from inception_deploy.inputs import sample_photos
from inception_deploy.models import get_arch
from inception_deploy.preprocess import PreprocessConfig, load_image, normalize, preprocess, resize_and_crop, to_rgb


@pytest.fixture(scope="module")
def expected():
    return np.load(EXPECTED)


@pytest.mark.parametrize("arch", ARCHS)
def test_pixels_equal_the_reference_eval_transform(arch, expected):
    """Numbers made once by torchvision / timm / pretrainedmodels (tests/reference_transforms.py)."""
    config = get_arch(arch).preprocess
    for photo in sample_photos():
        key = f"{arch}/{photo.name}"
        crop = resize_and_crop(to_rgb(Image.open(photo)), config)
        assert crop_digest(crop) == str(expected[f"{key}/crop_sha256"]), key
        got = preprocess([photo], config)[0][:, ::STRIDE, ::STRIDE]
        tolerance = 1e-3 if config.pixel_scale == 255 else 1e-5
        np.testing.assert_allclose(got, expected[f"{key}/strided"], rtol=0, atol=tolerance, err_msg=key)


def test_bn_inception_is_bgr_0_255_mean_subtracted():
    config = get_arch("v2").preprocess
    pixel = np.array([[[[10 / 255, 20 / 255, 30 / 255]]]], np.float32)  # one RGB pixel
    np.testing.assert_allclose(normalize(pixel, config)[0, :, 0, 0], [30 - 104, 20 - 117, 10 - 128], atol=1e-4)


def test_resize_keeps_aspect_and_truncates_long_side():
    config = PreprocessConfig(10, 12, "bilinear", (0.5,) * 3, (0.5,) * 3)
    wide = Image.new("RGB", (451, 300))
    assert resize_and_crop(wide, config).size == (10, 10)
    assert config.with_input_size(20).resize_size == 24


def test_stretch_resizes_both_sides_as_keras_load_img():
    """keep_aspect=False: the whole image squeezed to the square (Keras's load_img(target_size)),
    then the center crop (none where resize and input size are equal)."""
    photo = to_rgb(Image.open(sample_photos()[0])).crop((0, 0, 512, 300))
    config = PreprocessConfig(299, 299, "bilinear", (0.5,) * 3, (0.5,) * 3, keep_aspect=False)
    expected = np.asarray(photo.resize((299, 299), Image.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(load_image(photo, config), expected)
    cropped = PreprocessConfig(224, 256, "bilinear", (0.5,) * 3, (0.5,) * 3, keep_aspect=False)
    assert resize_and_crop(photo, cropped).size == (224, 224)
    assert not np.array_equal(
        load_image(photo, config), load_image(photo, PreprocessConfig(299, 299, "bilinear", (0.5,) * 3, (0.5,) * 3))
    )


def test_keep_aspect_is_written_only_where_false():
    """Artifacts and calibration caches made before the field existed read and digest as before."""
    from inception_deploy.calibration.cache import preprocess_digest

    kept = get_arch("v3").preprocess
    assert "keep_aspect" not in kept.to_dict() and PreprocessConfig.from_dict(kept.to_dict()) == kept
    stretched = PreprocessConfig(299, 299, "bilinear", (0.5,) * 3, (0.5,) * 3, keep_aspect=False)
    assert stretched.to_dict()["keep_aspect"] is False and PreprocessConfig.from_dict(stretched.to_dict()) == stretched
    assert preprocess_digest(stretched) != preprocess_digest(
        PreprocessConfig(299, 299, "bilinear", (0.5,) * 3, (0.5,) * 3)
    )


def test_export_preprocessing_flags_choose_the_resize():
    base = get_arch("v3").preprocess
    assert base.with_overrides(keep_aspect=False).keep_aspect is False
    assert base.with_overrides() == base


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return Image.open(buffer)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgb = np.asarray(to_rgb(_png(rgba)))
    assert tuple(rgb[1, 1]) == (255, 255, 255) and tuple(rgb[0, 0]) == (255, 0, 0)
    la = Image.new("LA", (2, 2), (0, 0))
    assert tuple(np.asarray(to_rgb(_png(la)))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency():
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    palette.putpixel((0, 0), 0)
    rgb = np.asarray(to_rgb(_png(palette)))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 255, 0)


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 32768], [65535, 1000]], np.uint16)
    image = _png(Image.fromarray(values))
    assert image.mode.startswith("I")
    rgb = np.asarray(to_rgb(image))
    assert rgb[0, 1, 0] == 128 and rgb[1, 0, 0] == 255 and rgb[0, 0, 0] == 0 and rgb[1, 1, 0] == 4


def test_cmyk_and_grayscale_become_rgb():
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # red in CMYK
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=100)
    rgb = np.asarray(to_rgb(Image.open(buffer)))
    assert rgb.shape == (2, 2, 3) and rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 60
    gray = to_rgb(Image.new("L", (2, 2), 77))
    assert gray.mode == "RGB" and tuple(np.asarray(gray)[0, 0]) == (77, 77, 77)


def test_exif_orientation_is_applied(tmp_path):
    tall = Image.new("RGB", (20, 40), (0, 0, 0))
    tall.paste((255, 0, 0), (0, 0, 20, 10))  # red band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    tall.save(path, exif=exif, quality=95)
    shown = to_rgb(Image.open(path))
    assert shown.size == (40, 20)
    pixels = np.asarray(shown)
    assert pixels[10, 35, 0] > 200 and pixels[10, 5, 0] < 50  # the band is now on the right


def test_load_image_accepts_pil_images_and_paths():
    config = get_arch("v3").preprocess
    photo = sample_photos()[0]
    np.testing.assert_array_equal(load_image(Image.open(photo), config), load_image(photo, config))
