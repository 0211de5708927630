// Image decoding for the data loader: JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp) to RGB
// uint8 HWC, off the event loop (one Napi::AsyncWorker per image on the libuv pool).
//
// Conventions, chosen to match what the authors' pipeline sees (PIL: Image.open, exif_transpose,
// convert('RGB'), resize(BILINEAR)):
// - JPEG EXIF orientation is applied (PNG/WebP EXIF is ignored, as it is rare in photo sets).
// - Alpha is dropped, not composited (PIL's RGBA->RGB does the same); palette/gray expand to RGB;
//   16-bit samples keep their high byte (PIL's "RGB;16B" unpacking does the same).
// - CMYK/YCCK JPEG: libjpeg converts YCCK to CMYK, then R = (255-C)(255-K)/255 with PIL's
//   rounding; Adobe-marked files store inverted CMYK (Photoshop), which is undone first.
// - Only "Premature end of JPEG file" among libjpeg's warnings is an error (truncated file);
//   other corrupt-data warnings are tolerated because PIL decodes such files too (a few exist
//   in ImageNet) and rejecting them would silently shrink a data set.
// - Optional exact resize is PIL's antialiased bilinear (triangle filter widened by the scale
//   factor, 22-bit fixed point, horizontal pass then vertical), so V1 matches torchvision's
//   Resize on a PIL image. A JPEG can first be DCT-scaled by 1/2, 1/4 or 1/8 (the scales that
//   libjpeg-turbo has SIMD for, and the ones PIL's draft() uses) to the smallest size that is
//   still >= the requested minimum, which is what makes V1 decoding cheap on large photos.
//
// Build with -DSOCO_IMAGE_CORE_ONLY to get the decoder without Node-API (for a C++ harness).

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

#ifndef SOCO_IMAGE_CORE_ONLY
#include <napi.h>
#endif

namespace soco_image {

// Caps the allocation a hostile header can request (100 MP RGB = 300 MB).
constexpr uint64_t kMaxPixels = 100'000'000ULL;

enum class Reason { Io, Empty, Unsupported, Truncated, Corrupt, TooLarge };

const char* ReasonCode(Reason r) {
  switch (r) {
    case Reason::Io: return "IMAGE_IO";
    case Reason::Empty: return "IMAGE_EMPTY";
    case Reason::Unsupported: return "IMAGE_UNSUPPORTED";
    case Reason::Truncated: return "IMAGE_TRUNCATED";
    case Reason::Corrupt: return "IMAGE_CORRUPT";
    case Reason::TooLarge: return "IMAGE_TOO_LARGE";
  }
  return "IMAGE_ERROR";
}

struct DecodeError : std::runtime_error {
  Reason reason;
  DecodeError(Reason r, const std::string& what) : std::runtime_error(what), reason(r) {}
};

enum class Format { Jpeg, Png, Webp };

const char* FormatName(Format f) {
  return f == Format::Jpeg ? "jpeg" : f == Format::Png ? "png" : "webp";
}

struct Image {
  std::vector<uint8_t> rgb;  // HWC, 3 channels
  int width = 0, height = 0;
  // Full-resolution size in display orientation (after EXIF), before DCT scaling or resize.
  int originalWidth = 0, originalHeight = 0;
  Format format = Format::Jpeg;
};

struct Options {
  int minWidth = 0, minHeight = 0;  // DCT-scale hint (display orientation)
  int width = 0, height = 0;        // exact output size; 0 = keep decoded size
  bool headerOnly = false;          // readImageSize: size and format only
};

Format Sniff(const uint8_t* d, size_t n) {
  if (n == 0) throw DecodeError(Reason::Empty, "empty file");
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::Jpeg;
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 8 && std::memcmp(d, kPng, 8) == 0) return Format::Png;
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0)
    return Format::Webp;
  const char* other = nullptr;
  if (n >= 4 && std::memcmp(d, "GIF8", 4) == 0) other = "GIF";
  else if (n >= 2 && d[0] == 'B' && d[1] == 'M') other = "BMP";
  else if (n >= 4 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0))
    other = "TIFF";
  throw DecodeError(Reason::Unsupported,
                    std::string("unsupported format (") + (other ? other : "not JPEG, PNG or WebP") +
                        ")");
}

void CheckSize(uint64_t w, uint64_t h) {
  if (w == 0 || h == 0) throw DecodeError(Reason::Corrupt, "zero image size");
  if (w * h > kMaxPixels)
    throw DecodeError(Reason::TooLarge, "image too large (" + std::to_string(w) + "x" +
                                            std::to_string(h) + " > 100 megapixels)");
}

// ---------------------------------------------------------------- EXIF orientation

// Returns the TIFF orientation tag (1..8) of an APP1 Exif payload, or 1 when absent/invalid.
int ExifOrientation(const uint8_t* p, size_t n) {
  if (n < 14 || std::memcmp(p, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* t = p + 6;
  size_t tn = n - 6;
  bool le;
  if (t[0] == 'I' && t[1] == 'I') le = true;
  else if (t[0] == 'M' && t[1] == 'M') le = false;
  else return 1;
  auto u16 = [&](size_t o) -> uint32_t {
    return le ? (t[o] | (t[o + 1] << 8)) : ((t[o] << 8) | t[o + 1]);
  };
  auto u32 = [&](size_t o) -> uint32_t {
    return le ? (uint32_t(t[o]) | (uint32_t(t[o + 1]) << 8) | (uint32_t(t[o + 2]) << 16) |
                 (uint32_t(t[o + 3]) << 24))
              : ((uint32_t(t[o]) << 24) | (uint32_t(t[o + 1]) << 16) | (uint32_t(t[o + 2]) << 8) |
                 uint32_t(t[o + 3]));
  };
  if (u16(2) != 42) return 1;
  size_t ifd = u32(4);
  if (ifd + 2 > tn) return 1;
  size_t count = u16(ifd);
  for (size_t i = 0; i < count; i++) {
    size_t e = ifd + 2 + 12 * i;
    if (e + 12 > tn) return 1;
    if (u16(e) == 0x0112) {
      uint32_t type = u16(e + 2);
      uint32_t v = type == 3 ? u16(e + 8) : type == 4 ? u32(e + 8) : 1;
      return v >= 1 && v <= 8 ? int(v) : 1;
    }
  }
  return 1;
}

bool SwapsAxes(int orientation) { return orientation >= 5; }

// Applies the display transform of an EXIF orientation, as PIL's ImageOps.exif_transpose does.
void ApplyOrientation(Image& im, int o) {
  if (o <= 1) return;
  const int w = im.width, h = im.height;
  const int ow = SwapsAxes(o) ? h : w, oh = SwapsAxes(o) ? w : h;
  std::vector<uint8_t> out(size_t(ow) * oh * 3);
  for (int y = 0; y < oh; y++) {
    for (int x = 0; x < ow; x++) {
      int sx, sy;  // source pixel of display pixel (x, y)
      switch (o) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x; break;  // 8
      }
      std::memcpy(&out[(size_t(y) * ow + x) * 3], &im.rgb[(size_t(sy) * w + sx) * 3], 3);
    }
  }
  im.rgb.swap(out);
  im.width = ow;
  im.height = oh;
}

// ---------------------------------------------------------------- JPEG

// libjpeg reports fatal errors through error_exit, which must not return: we longjmp back to
// RunJpeg. Everything RunJpeg touches after setjmp lives in *JpegJob (not in its own locals), so
// nothing is indeterminate after the jump, and no C++ destructor is skipped (the frames unwound
// are libjpeg's C frames and these two callbacks, which hold no objects).
struct JpegJob {
  jpeg_decompress_struct cinfo;
  struct Err {
    jpeg_error_mgr pub;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    bool truncated;
  } err;
  const uint8_t* data;
  size_t size;
  Options opt;
  Image* out;
  int orientation;
  std::vector<uint8_t> row;  // one CMYK scanline
};

void JpegErrorExit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegJob::Err*>(c->err);
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jmp, 1);
}

void JpegEmitMessage(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<JpegJob::Err*>(c->err);
  c->err->num_warnings++;
  if (c->err->msg_code == JWRN_JPEG_EOF) {  // libjpeg would pad with grey: refuse instead
    e->truncated = true;
    std::snprintf(e->msg, sizeof e->msg, "premature end of data");
    longjmp(e->jmp, 1);
  }
}

inline uint8_t MulDiv255(int a, int b) {  // PIL's MULDIV255 rounding
  int t = a * b + 128;
  return uint8_t(((t >> 8) + t) >> 8);
}

bool RunJpeg(JpegJob* j) {
  j->cinfo.err = jpeg_std_error(&j->err.pub);
  j->err.pub.error_exit = JpegErrorExit;
  j->err.pub.emit_message = JpegEmitMessage;
  j->err.truncated = false;
  j->err.msg[0] = 0;
  jpeg_create_decompress(&j->cinfo);
  if (setjmp(j->err.jmp)) {
    jpeg_destroy_decompress(&j->cinfo);
    return false;
  }
  jpeg_mem_src(&j->cinfo, j->data, static_cast<unsigned long>(j->size));
  jpeg_save_markers(&j->cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&j->cinfo, TRUE);

  j->orientation = 1;
  for (jpeg_saved_marker_ptr m = j->cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1) {
      j->orientation = ExifOrientation(m->data, m->data_length);
      if (j->orientation != 1) break;
    }
  }
  Image& im = *j->out;
  const bool swap = SwapsAxes(j->orientation);
  im.originalWidth = int(swap ? j->cinfo.image_height : j->cinfo.image_width);
  im.originalHeight = int(swap ? j->cinfo.image_width : j->cinfo.image_height);
  if (j->opt.headerOnly) {
    jpeg_destroy_decompress(&j->cinfo);
    return true;
  }
  CheckSize(j->cinfo.image_width, j->cinfo.image_height);  // throws only before any longjmp use

  const bool cmyk = j->cinfo.jpeg_color_space == JCS_CMYK || j->cinfo.jpeg_color_space == JCS_YCCK;
  j->cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg-turbo expands gray to RGB
  // DCT scaling hint is given in display orientation; the decoder works in stored orientation.
  const unsigned mw = unsigned(swap ? j->opt.minHeight : j->opt.minWidth);
  const unsigned mh = unsigned(swap ? j->opt.minWidth : j->opt.minHeight);
  if (mw > 0 || mh > 0) {
    for (unsigned denom : {8u, 4u, 2u}) {
      if ((j->cinfo.image_width + denom - 1) / denom >= mw &&
          (j->cinfo.image_height + denom - 1) / denom >= mh) {
        j->cinfo.scale_num = 1;
        j->cinfo.scale_denom = denom;
        break;
      }
    }
  }
  jpeg_start_decompress(&j->cinfo);
  const unsigned w = j->cinfo.output_width, h = j->cinfo.output_height;
  im.width = int(w);
  im.height = int(h);
  im.rgb.resize(size_t(w) * h * 3);
  if (cmyk) j->row.resize(size_t(w) * 4);
  const bool inverted = j->cinfo.saw_Adobe_marker;
  while (j->cinfo.output_scanline < h) {
    uint8_t* dst = &im.rgb[size_t(j->cinfo.output_scanline) * w * 3];
    if (!cmyk) {
      JSAMPROW rows[1] = {dst};
      jpeg_read_scanlines(&j->cinfo, rows, 1);
      continue;
    }
    JSAMPROW rows[1] = {j->row.data()};
    jpeg_read_scanlines(&j->cinfo, rows, 1);
    const uint8_t* s = j->row.data();
    for (unsigned x = 0; x < w; x++, s += 4, dst += 3) {
      const int c = inverted ? 255 - s[0] : s[0], m = inverted ? 255 - s[1] : s[1];
      const int yy = inverted ? 255 - s[2] : s[2], nk = inverted ? s[3] : 255 - s[3];
      dst[0] = uint8_t(nk - MulDiv255(c, nk));
      dst[1] = uint8_t(nk - MulDiv255(m, nk));
      dst[2] = uint8_t(nk - MulDiv255(yy, nk));
    }
  }
  jpeg_finish_decompress(&j->cinfo);
  jpeg_destroy_decompress(&j->cinfo);
  return true;
}

void DecodeJpeg(const uint8_t* d, size_t n, const Options& opt, Image& im) {
  JpegJob job;
  job.data = d;
  job.size = n;
  job.opt = opt;
  job.out = &im;
  bool ok;
  try {
    ok = RunJpeg(&job);
  } catch (...) {  // CheckSize: libjpeg state must still be released
    jpeg_destroy_decompress(&job.cinfo);
    throw;
  }
  if (!ok) {
    if (job.err.truncated) throw DecodeError(Reason::Truncated, "truncated JPEG (premature end of data)");
    throw DecodeError(Reason::Corrupt, std::string("corrupt JPEG (") + job.err.msg + ")");
  }
  if (!opt.headerOnly) ApplyOrientation(im, job.orientation);
}

// ---------------------------------------------------------------- PNG

// Same longjmp discipline as JPEG: state in *PngJob, the jump comes from libpng's C frames.
struct PngJob {
  const uint8_t* data;
  size_t size, pos;
  Options opt;
  Image* out;
  std::vector<uint8_t> buf;  // decoded rows (3 or 4 channels)
  std::vector<png_bytep> rows;
  char msg[256];
  bool truncated;
  png_structp png;
  png_infop info;
};

void PngError(png_structp png, png_const_charp m) {
  auto* j = static_cast<PngJob*>(png_get_error_ptr(png));
  if (!j->truncated) std::snprintf(j->msg, sizeof j->msg, "%s", m);
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}  // e.g. bad ancillary chunks: PIL ignores them too

void PngRead(png_structp png, png_bytep dst, png_size_t n) {
  auto* j = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > j->size - j->pos) {
    j->truncated = true;
    std::snprintf(j->msg, sizeof j->msg, "premature end of data");
    png_error(png, "premature end of data");
  }
  std::memcpy(dst, j->data + j->pos, n);
  j->pos += n;
}

bool RunPng(PngJob* j) {
  if (setjmp(png_jmpbuf(j->png))) return false;
  png_set_read_fn(j->png, j, PngRead);
  png_read_info(j->png, j->info);
  const png_uint_32 w = png_get_image_width(j->png, j->info);
  const png_uint_32 h = png_get_image_height(j->png, j->info);
  Image& im = *j->out;
  im.originalWidth = int(w);
  im.originalHeight = int(h);
  if (j->opt.headerOnly) return true;
  CheckSize(w, h);
  const int ct = png_get_color_type(j->png, j->info);
  const int depth = png_get_bit_depth(j->png, j->info);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->png);
  if ((ct & PNG_COLOR_MASK_COLOR) == 0) {
    if (depth < 8) png_set_expand_gray_1_2_4_to_8(j->png);
    png_set_gray_to_rgb(j->png);
  }
  if (depth == 16) png_set_strip_16(j->png);  // high byte, as PIL
  png_set_interlace_handling(j->png);
  png_read_update_info(j->png, j->info);
  // Alpha (from the colour type or a tRNS chunk) may survive the expansion: dropped below.
  const int ch = png_get_channels(j->png, j->info);
  if ((ch != 3 && ch != 4) || png_get_rowbytes(j->png, j->info) != size_t(w) * ch) {
    std::snprintf(j->msg, sizeof j->msg, "unexpected PNG layout");
    png_error(j->png, "unexpected PNG layout");
  }
  j->buf.resize(size_t(w) * h * ch);
  j->rows.resize(h);
  for (png_uint_32 y = 0; y < h; y++) j->rows[y] = &j->buf[size_t(y) * w * ch];
  png_read_image(j->png, j->rows.data());
  im.width = int(w);
  im.height = int(h);
  if (ch == 3) {
    im.rgb.swap(j->buf);
  } else {
    im.rgb.resize(size_t(w) * h * 3);
    const uint8_t* s = j->buf.data();
    uint8_t* d = im.rgb.data();
    for (size_t i = 0, n = size_t(w) * h; i < n; i++, s += 4, d += 3) std::memcpy(d, s, 3);
  }
  return true;
}

void DecodePng(const uint8_t* d, size_t n, const Options& opt, Image& im) {
  PngJob job{};
  job.data = d;
  job.size = n;
  job.opt = opt;
  job.out = &im;
  job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, PngError, PngWarning);
  if (!job.png) throw std::bad_alloc();
  job.info = png_create_info_struct(job.png);
  if (!job.info) {
    png_destroy_read_struct(&job.png, nullptr, nullptr);
    throw std::bad_alloc();
  }
  // CRC errors in ancillary chunks are warnings by default; in IDAT they are errors.
  bool ok;
  try {
    ok = RunPng(&job);
  } catch (...) {
    png_destroy_read_struct(&job.png, &job.info, nullptr);
    throw;
  }
  png_destroy_read_struct(&job.png, &job.info, nullptr);
  if (!ok) {
    if (job.truncated) throw DecodeError(Reason::Truncated, "truncated PNG (premature end of data)");
    throw DecodeError(Reason::Corrupt, std::string("corrupt PNG (") + job.msg + ")");
  }
}

// ---------------------------------------------------------------- WebP

void DecodeWebp(const uint8_t* d, size_t n, const Options& opt, Image& im) {
  WebPBitstreamFeatures f;
  const VP8StatusCode st = WebPGetFeatures(d, n, &f);
  if (st == VP8_STATUS_NOT_ENOUGH_DATA) throw DecodeError(Reason::Truncated, "truncated WebP");
  if (st != VP8_STATUS_OK) throw DecodeError(Reason::Corrupt, "corrupt WebP header");
  if (f.has_animation) throw DecodeError(Reason::Unsupported, "unsupported format (animated WebP)");
  im.originalWidth = f.width;
  im.originalHeight = f.height;
  if (opt.headerOnly) return;
  CheckSize(uint64_t(f.width), uint64_t(f.height));
  im.width = f.width;
  im.height = f.height;
  im.rgb.resize(size_t(f.width) * f.height * 3);
  // Alpha, if any, is dropped (RGB output of the non-premultiplied samples).
  if (!WebPDecodeRGBInto(d, n, im.rgb.data(), im.rgb.size(), f.width * 3))
    throw DecodeError(n < 64 ? Reason::Truncated : Reason::Corrupt, "corrupt or truncated WebP data");
}

// ---------------------------------------------------------------- resize

// PIL's antialiased bilinear (Resample.c, 8-bit path): per output pixel a normalised triangle
// filter of radius max(1, in/out) input pixels, weights in 22-bit fixed point.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // (first input index, tap count) per output index
  std::vector<int32_t> k;   // ksize weights per output index
};

Coeffs Precompute(int inSize, int outSize) {
  Coeffs c;
  const double scale = double(inSize) / outSize;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(outSize) * 2);
  c.k.assign(size_t(outSize) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < outSize; xx++) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
      const double t = std::fabs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; x++) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[size_t(xx) * c.ksize + x] =
          int32_t(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[size_t(xx) * 2] = xmin;
    c.bounds[size_t(xx) * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  v >>= kPrecisionBits;
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

void Resize(Image& im, int ow, int oh) {
  if (im.width == ow && im.height == oh) return;
  std::vector<uint8_t> tmp;
  const uint8_t* src = im.rgb.data();
  int w = im.width;
  const int h = im.height;
  if (ow != w) {  // horizontal pass
    const Coeffs c = Precompute(w, ow);
    tmp.resize(size_t(ow) * h * 3);
    for (int y = 0; y < h; y++) {
      const uint8_t* row = src + size_t(y) * w * 3;
      uint8_t* d = &tmp[size_t(y) * ow * 3];
      for (int xx = 0; xx < ow; xx++) {
        const int xmin = c.bounds[xx * 2], n = c.bounds[xx * 2 + 1];
        const int32_t* k = &c.k[size_t(xx) * c.ksize];
        int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        const uint8_t* p = row + size_t(xmin) * 3;
        for (int x = 0; x < n; x++, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        d[xx * 3] = Clip8(s0);
        d[xx * 3 + 1] = Clip8(s1);
        d[xx * 3 + 2] = Clip8(s2);
      }
    }
    src = tmp.data();
    w = ow;
  }
  if (oh != h) {  // vertical pass
    const Coeffs c = Precompute(h, oh);
    std::vector<uint8_t> out(size_t(w) * oh * 3);
    const size_t stride = size_t(w) * 3;
    std::vector<int32_t> acc(stride);
    for (int yy = 0; yy < oh; yy++) {
      const int ymin = c.bounds[yy * 2], n = c.bounds[yy * 2 + 1];
      const int32_t* k = &c.k[size_t(yy) * c.ksize];
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
      for (int y = 0; y < n; y++) {
        const uint8_t* row = src + size_t(ymin + y) * stride;
        const int32_t ky = k[y];
        for (size_t i = 0; i < stride; i++) acc[i] += row[i] * ky;
      }
      uint8_t* d = &out[size_t(yy) * stride];
      for (size_t i = 0; i < stride; i++) d[i] = Clip8(acc[i]);
    }
    im.rgb.swap(out);
  } else {
    im.rgb.swap(tmp);
  }
  im.width = ow;
  im.height = oh;
}

// ---------------------------------------------------------------- entry points

void Decode(const uint8_t* d, size_t n, const Options& opt, Image& im) {
  im.format = Sniff(d, n);
  Options o = opt;
  if (o.width > 0 && o.minWidth == 0 && o.minHeight == 0) {  // exact size implies the hint
    o.minWidth = o.width;
    o.minHeight = o.height;
  }
  switch (im.format) {
    case Format::Jpeg: DecodeJpeg(d, n, o, im); break;
    case Format::Png: DecodePng(d, n, o, im); break;
    case Format::Webp: DecodeWebp(d, n, o, im); break;
  }
  if (!o.headerOnly && o.width > 0) Resize(im, o.width, o.height);
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw DecodeError(Reason::Io, "cannot open file (" +
                                      std::error_code(errno, std::generic_category()).message() + ")");
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw DecodeError(Reason::Io, "cannot read file");
  return bytes;
}

}  // namespace soco_image

#ifndef SOCO_IMAGE_CORE_ONLY

namespace {

using namespace soco_image;

// One image per worker: the libuv pool (UV_THREADPOOL_SIZE, default 4) gives the parallelism.
class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, std::string name, std::string path, std::vector<uint8_t> bytes,
               Options opt)
      : Napi::AsyncWorker(env, "soco:decodeImage"),
        deferred_(Napi::Promise::Deferred::New(env)),
        name_(std::move(name)),
        path_(std::move(path)),
        bytes_(std::move(bytes)),
        opt_(opt) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      if (!path_.empty()) bytes_ = ReadFile(path_);
      Decode(bytes_.data(), bytes_.size(), opt_, image_);
    } catch (const DecodeError& e) {
      reason_ = ReasonCode(e.reason);
      SetError(name_ + ": " + e.what());
    } catch (const std::bad_alloc&) {
      reason_ = "IMAGE_TOO_LARGE";
      SetError(name_ + ": out of memory while decoding");
    } catch (const std::exception& e) {
      reason_ = "IMAGE_ERROR";
      SetError(name_ + ": " + e.what());
    }
    std::vector<uint8_t>().swap(bytes_);  // free the encoded bytes on the worker thread
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    if (!opt_.headerOnly) {
      // Copy into a V8-owned buffer: external buffers are refused by some runtimes (Electron).
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, image_.rgb.size());
      std::memcpy(ab.Data(), image_.rgb.data(), image_.rgb.size());
      r.Set("data", Napi::Uint8Array::New(env, image_.rgb.size(), ab, 0));
      r.Set("width", image_.width);
      r.Set("height", image_.height);
      r.Set("originalWidth", image_.originalWidth);
      r.Set("originalHeight", image_.originalHeight);
    } else {
      r.Set("width", image_.originalWidth);
      r.Set("height", image_.originalHeight);
    }
    r.Set("format", FormatName(image_.format));
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", reason_);
    err.Set("file", name_);
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string name_, path_;
  std::vector<uint8_t> bytes_;
  Options opt_;
  Image image_;
  std::string reason_;
};

int DimOption(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return 0;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 65535) || d != std::floor(d))
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be an integer in [0, 65535]");
  return int(d);
}

// decodeImage(source: string | Uint8Array, opts?: {minWidth, minHeight, width, height}, headerOnly)
Napi::Value DecodeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name, path;
  std::vector<uint8_t> bytes;
  if (info.Length() < 1) throw Napi::TypeError::New(env, "decodeImage: source is required");
  if (info[0].IsString()) {
    path = info[0].As<Napi::String>().Utf8Value();
    if (path.empty()) throw Napi::TypeError::New(env, "decodeImage: empty path");
    if (path.find('\0') != std::string::npos)
      throw Napi::TypeError::New(env, "decodeImage: path contains a NUL byte");
    name = path;
  } else if (info[0].IsTypedArray() &&
             info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    bytes.assign(a.Data(), a.Data() + a.ByteLength());  // JS may reuse the buffer meanwhile
    name = "<buffer>";
  } else {
    throw Napi::TypeError::New(env, "decodeImage: source must be a file path or a Buffer/Uint8Array");
  }
  Options opt;
  if (info.Length() >= 2 && !info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) throw Napi::TypeError::New(env, "decodeImage: options must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    opt.minWidth = DimOption(o, "minWidth");
    opt.minHeight = DimOption(o, "minHeight");
    opt.width = DimOption(o, "width");
    opt.height = DimOption(o, "height");
    if ((opt.width > 0) != (opt.height > 0))
      throw Napi::RangeError::New(env, "decodeImage: width and height must be given together");
    Napi::Value n = o.Get("name");
    if (n.IsString()) name = n.As<Napi::String>().Utf8Value();
  }
  if (info.Length() >= 3) opt.headerOnly = info[2].ToBoolean().Value();
  auto* w = new DecodeWorker(env, std::move(name), std::move(path), std::move(bytes), opt);
  Napi::Promise p = w->Promise();
  w->Queue();  // the worker deletes itself after OnOK/OnError
  return p;
}

}  // namespace

namespace soco {
void InitImage(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeImage", Napi::Function::New(env, DecodeImage, "decodeImage"));
}
}  // namespace soco

#endif  // SOCO_IMAGE_CORE_ONLY
