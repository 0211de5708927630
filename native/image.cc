// Image decoding for the data loader: JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp) to RGB
// uint8 HWC, off the event loop (on the addon's own decode threads, DecodePool).
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
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <jpeglib.h>
#include <jerror.h>
#include <libdeflate.h>
#include <png.h>
#include <zlib.h>
#include <webp/decode.h>

#ifndef SOCO_IMAGE_CORE_ONLY
#include <napi.h>
#endif

namespace soco_image {

// Caps the allocation a hostile header can request (100 MP RGB = 300 MB).
constexpr uint64_t kMaxPixels = 100'000'000ULL;
// Caps what is read of one file: a path to a device or a pipe that never ends (/dev/zero) would
// otherwise fill the memory; no encoded image of kMaxPixels comes near it.
constexpr size_t kMaxFileBytes = size_t(1) << 30;

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

// A vector whose resize() leaves new bytes uninitialised: every pixel buffer here is written in
// full by the decoder or the resampler, and zeroing it first costs a pass over fresh pages.
template <class T>
struct DefaultInit : std::allocator<T> {
  template <class U> struct rebind { using other = DefaultInit<U>; };
  DefaultInit() = default;
  template <class U> DefaultInit(const DefaultInit<U>&) noexcept {}
  template <class U> void construct(U* p) noexcept { ::new (static_cast<void*>(p)) U; }
  template <class U, class... A> void construct(U* p, A&&... a) { ::new (static_cast<void*>(p)) U(std::forward<A>(a)...); }
};
using Bytes = std::vector<uint8_t, DefaultInit<uint8_t>>;

// For a per-thread buffer reused across images (no allocation or page faults per image): one
// that an unusually large file grew past 64 MB is released after use.
struct KeepBounded {
  Bytes& b;
  ~KeepBounded() { if (b.capacity() > (size_t(64) << 20)) Bytes().swap(b); }
};

struct Image {
  Bytes rgb;  // HWC, 3 channels
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
  Bytes out(size_t(ow) * oh * 3);
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
  Bytes buf;  // decoded rows (3 or 4 channels)
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

// Fast path for the PNGs photo sets hold (8-bit gray, gray+alpha, RGB, RGBA; not interlaced):
// the IDAT stream inflated in one call from the file's bytes, rows unfiltered branch-free straight
// into the RGB output. libpng's row-by-row read costs a copy of the compressed data, a copy of
// every row and per-byte branchy Paeth/Average filters (Debian builds it without its SSE ones).
// Checks the CRCs of IHDR and the other critical chunks before IDAT, IHDR's fields, the filter
// types and the zlib stream to its end with its Adler-32 (which catches damaged image data; the
// IDAT CRCs are not computed, as PIL does not), and returns false, having thrown nothing, on any
// other layout or any irregularity: DecodePng then runs libpng (which does check IDAT CRCs and,
// by default, lets a bad Adler-32 pass), which decodes the file or words the error.
inline uint32_t Be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

inline int PaethPredict(int a, int b, int c) {  // the PNG spec's order of ties, without branches
  const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
  const int bc = pb <= pc ? b : c;
  return pa <= pb && pa <= pc ? a : bc;
}

#if defined(__SSE2__)
// Paeth for 3- and 4-byte pixels with a whole pixel per step in 16-bit lanes (the predictor's
// chain then runs once a pixel instead of once a byte): same predictor, same ties, same bytes.
template <int B>
inline __m128i LoadPixel(const uint8_t* p) {
  uint32_t v;  // assembled in a register: a 4-byte reload of 3 stored bytes stalls on forwarding
  if constexpr (B == 4) {
    std::memcpy(&v, p, 4);
  } else {
    uint16_t lo;
    std::memcpy(&lo, p, 2);
    v = lo | uint32_t(p[2]) << 16;
  }
  return _mm_unpacklo_epi8(_mm_cvtsi32_si128(int(v)), _mm_setzero_si128());
}

inline __m128i Abs16(__m128i x) { return _mm_max_epi16(x, _mm_sub_epi16(_mm_setzero_si128(), x)); }

template <int B>
void PaethPixels(const uint8_t* in, uint8_t* out, const uint8_t* prev, size_t n) {
  const __m128i low = _mm_set1_epi16(0xff);
  __m128i a = _mm_setzero_si128(), c = a;
  for (size_t i = 0; i < n; i += B) {
    const __m128i b = LoadPixel<B>(prev + i), x = LoadPixel<B>(in + i);
    const __m128i ac = _mm_sub_epi16(a, c), bc = _mm_sub_epi16(b, c);
    const __m128i pa = Abs16(bc), pb = Abs16(ac), pc = Abs16(_mm_add_epi16(ac, bc));
    const __m128i take_c = _mm_cmpgt_epi16(pb, pc);
    const __m128i b_or_c = _mm_or_si128(_mm_and_si128(take_c, c), _mm_andnot_si128(take_c, b));
    const __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
    const __m128i pred = _mm_or_si128(_mm_and_si128(not_a, b_or_c), _mm_andnot_si128(not_a, a));
    a = _mm_and_si128(_mm_add_epi16(x, pred), low);
    const uint32_t v = uint32_t(_mm_cvtsi128_si32(_mm_packus_epi16(a, a)));
    std::memcpy(out + i, &v, B);
    c = b;
  }
}
#endif

// One row of `n` bytes (a whole number of B-byte pixels): out = unfilter(in) given the previous
// unfiltered row (zeros for the first). out may be in (in place), never prev. Sub, Average and
// Paeth depend on the pixel to the left: it is carried in registers (one per channel) rather than
// read back from out, which would put a store-to-load round trip on every byte's critical path.
template <int B>
void UnfilterRow(int type, const uint8_t* in, uint8_t* out, const uint8_t* prev, size_t n) {
  int a[B], c[B];
  switch (type) {
    case 0:
      if (out != in) std::memcpy(out, in, n);
      return;
    case 2:
      for (size_t i = 0; i < n; i++) out[i] = uint8_t(in[i] + prev[i]);
      return;
    case 1:
      for (int k = 0; k < B; k++) a[k] = 0;
      for (size_t i = 0; i < n; i += B)
        for (int k = 0; k < B; k++) out[i + k] = uint8_t(a[k] = (in[i + k] + a[k]) & 0xff);
      return;
    case 3:
      for (int k = 0; k < B; k++) a[k] = 0;
      for (size_t i = 0; i < n; i += B)
        for (int k = 0; k < B; k++) out[i + k] = uint8_t(a[k] = (in[i + k] + ((a[k] + prev[i + k]) >> 1)) & 0xff);
      return;
    default:  // 4, Paeth; left and upper-left are 0 for the first pixel
#if defined(__SSE2__)
      if constexpr (B >= 3) return PaethPixels<B>(in, out, prev, n);
#endif
      for (int k = 0; k < B; k++) a[k] = c[k] = 0;
      for (size_t i = 0; i < n; i += B)
        for (int k = 0; k < B; k++) {
          const int b = prev[i + k];
          out[i + k] = uint8_t(a[k] = (in[i + k] + PaethPredict(a[k], b, c[k])) & 0xff);
          c[k] = b;
        }
      return;
  }
}

void UnfilterRowAny(int bpp, int type, const uint8_t* in, uint8_t* out, const uint8_t* prev, size_t n) {
  switch (bpp) {
    case 1: UnfilterRow<1>(type, in, out, prev, n); break;
    case 2: UnfilterRow<2>(type, in, out, prev, n); break;
    case 3: UnfilterRow<3>(type, in, out, prev, n); break;
    default: UnfilterRow<4>(type, in, out, prev, n); break;
  }
}

// libdeflate inflates a whole buffer ~2x faster than zlib's streaming inflate; one decompressor
// (a few KB of tables) per pool thread.
libdeflate_decompressor* Inflater() {
  struct Free {
    void operator()(libdeflate_decompressor* p) const { libdeflate_free_decompressor(p); }
  };
  thread_local std::unique_ptr<libdeflate_decompressor, Free> d(libdeflate_alloc_decompressor());
  if (!d) throw std::bad_alloc();
  return d.get();
}

bool DecodePngFast(const uint8_t* d, size_t n, Image& im) {
  // Signature (checked by Sniff), then IHDR.
  if (n < 8 + 12 + 13 || Be32(d + 8) != 13 || std::memcmp(d + 12, "IHDR", 4) != 0) return false;
  if (uint32_t(crc32(0, d + 12, 17)) != Be32(d + 29)) return false;
  const uint8_t* h = d + 16;
  const uint32_t w = Be32(h), ht = Be32(h + 4);
  const int depth = h[8], ct = h[9];
  if (w == 0 || ht == 0 || w > 1000000 || ht > 1000000) return false;  // libpng's default limits
  if (depth != 8 || (ct != 0 && ct != 2 && ct != 4 && ct != 6) || h[10] != 0 || h[11] != 0 || h[12] != 0)
    return false;
  const int ch = ct == 0 ? 1 : ct == 2 ? 3 : ct == 4 ? 2 : 4;
  CheckSize(w, ht);
  const size_t rowbytes = size_t(w) * ch, stride = rowbytes + 1;

  // Chunks up to the first IDAT: critical ones must be known and intact, ancillary ones are
  // skipped (libpng discards a damaged one with a warning: nothing that changes the pixels here).
  size_t pos = 8 + 12 + 13;
  auto chunk = [&](size_t at, uint32_t* len) {
    if (at > n || n - at < 12) return false;
    *len = Be32(d + at);
    return *len <= 0x7fffffffu && n - at - 12 >= *len;
  };
  uint32_t len = 0;
  for (;;) {
    if (!chunk(pos, &len)) return false;
    const uint8_t* type = d + pos + 4;
    if (std::memcmp(type, "IDAT", 4) == 0) break;
    if (std::memcmp(type, "IEND", 4) == 0) return false;
    if (!(type[0] & 0x20)) {  // critical
      if (std::memcmp(type, "PLTE", 4) != 0) return false;
      if (uint32_t(crc32(0, type, len + 4)) != Be32(type + 4 + len)) return false;
    }
    pos += 12 + size_t(len);
  }

  // The IDAT chunks in a row, gathered into a per-thread buffer when there are several (as most
  // writers split them). The zlib stream must inflate to exactly the image (libdeflate checks the
  // Adler-32 at its end); bytes after it are ignored, as libpng does.
  thread_local Bytes joined;
  KeepBounded keep{joined};
  joined.clear();
  const uint8_t* first = d + pos + 8;
  const size_t firstLen = len;
  for (size_t at = pos + 12 + size_t(len); chunk(at, &len) && std::memcmp(d + at + 4, "IDAT", 4) == 0;
       at += 12 + size_t(len)) {
    if (joined.empty()) joined.assign(first, first + firstLen);
    joined.insert(joined.end(), d + at + 8, d + at + 8 + len);
  }
  const uint8_t* z = joined.empty() ? first : joined.data();
  const size_t zlen = joined.empty() ? firstLen : joined.size();
  Bytes raw(stride * ht);
  if (libdeflate_zlib_decompress(Inflater(), z, zlen, raw.data(), raw.size(), nullptr) != LIBDEFLATE_SUCCESS)
    return false;

  im.width = int(w);
  im.height = int(ht);
  im.rgb.resize(rowbytes / ch * 3 * ht);
  std::vector<uint8_t> zeros(rowbytes, 0);
  const uint8_t* prev = zeros.data();
  for (uint32_t y = 0; y < ht; y++) {
    uint8_t* row = &raw[y * stride];
    const int type = row[0];
    if (type > 4) return false;
    uint8_t* rgb = &im.rgb[size_t(y) * w * 3];
    if (ch == 3) {  // straight into the output, the previous output row as the prior row
      UnfilterRowAny(3, type, row + 1, rgb, prev, rowbytes);
      prev = rgb;
      continue;
    }
    UnfilterRowAny(ch, type, row + 1, row + 1, prev, rowbytes);
    prev = row + 1;
    const uint8_t* s = row + 1;
    if (ch == 1) {  // one 4-byte store a pixel, each overlapping the next pixel's first byte
      uint32_t x = 0;
      for (; x + 1 < w; x++, rgb += 3) {
        const uint32_t g = s[x] * 0x00010101u;
        std::memcpy(rgb, &g, 4);
      }
      rgb[0] = rgb[1] = rgb[2] = s[x];
    } else if (ch == 2) {  // gray + alpha: the alpha is dropped, as PIL does
      for (uint32_t x = 0; x < w; x++, rgb += 3, s += 2) rgb[0] = rgb[1] = rgb[2] = s[0];
    } else {
      for (uint32_t x = 0; x < w; x++, rgb += 3, s += 4) std::memcpy(rgb, s, 3);
    }
  }
  im.originalWidth = int(w);
  im.originalHeight = int(ht);
  return true;
}

void DecodePng(const uint8_t* d, size_t n, const Options& opt, Image& im) {
  if (!opt.headerOnly && DecodePngFast(d, n, im)) return;
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
  Bytes tmp;
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
    Bytes out(size_t(w) * oh * 3);
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

// Reads a whole file into `out` (resized to its length; capacity kept). POSIX calls rather than
// stdio: open, fstat, one read of the known size (+1, so EOF shows as a short read), close.
void ReadFileInto(const std::string& path, Bytes& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw DecodeError(Reason::Io, "cannot open file (" +
                                      std::error_code(errno, std::generic_category()).message() + ")");
  struct stat st;
  const bool known = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0;
  const auto tooLarge = [&] {
    ::close(fd);
    return DecodeError(Reason::TooLarge, "file larger than " + std::to_string(kMaxFileBytes >> 20) + " MB");
  };
  if (known && size_t(st.st_size) > kMaxFileBytes) throw tooLarge();
  out.resize(known ? size_t(st.st_size) + 1 : size_t(1) << 16);
  size_t at = 0;
  for (;;) {
    const ssize_t r = ::read(fd, out.data() + at, out.size() - at);
    if (r < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw DecodeError(Reason::Io, "cannot read file");
    }
    if (r == 0) break;
    at += size_t(r);
    if (at > kMaxFileBytes) throw tooLarge();
    if (at == out.size()) out.resize(std::min(out.size() * 2, kMaxFileBytes + 1));
  }
  ::close(fd);
  out.resize(at);
}

// ---------------------------------------------------------------- augmentations (CPU)

// BYOL's per-view augmentations fused per image, on float32 NCHW planes in [0, 1], in place:
// what lib/data/augment.ts runs as LibTorch ops, here as a few cache-resident passes per image
// (a batch of tiny LibTorch ops pays ~20 passes and a dispatch each for the hue alone). Every op
// follows torchvision 0.14's tensor code (functional_tensor.py) operation by operation in float32,
// so results agree to float rounding (test/augment.test.ts checks them against torchvision).

// The loops below are written to vectorise (selects, no branches, no libm calls); GCC does so
// from -O3 without FP trapping semantics (which do not change any value).
// Every function is inlined into AugmentBatch and, on x86-64, into an AVX2 copy of it.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SOCO_X86_DISPATCH 1
#define SOCO_INLINE inline __attribute__((always_inline))
#else
#define SOCO_X86_DISPATCH 0
#define SOCO_INLINE inline
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O3", "no-trapping-math")  // no FP traps: lets selects compute both sides
#endif

// Per-sample record of the params array (Float64Array, kAugRecord numbers per image).
enum AugField {
  kFlip = 0, kJitter, kOrder0, kOrder1, kOrder2, kOrder3,  // order: op index, -1 = off
  kBrightness, kContrast, kSaturation, kHue, kGrayscale, kBlur, kSolarize, kAugRecord
};

struct AugmentConfig {
  int kernelSize = 0;
  const float* kernels = nullptr;  // kernelSize taps per image (rows of images without blur unused)
  float threshold = 0.5f;
  bool normalize = false;
  float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
};

SOCO_INLINE float Clamp01(float v) {
  const float lo = v < 0.f ? 0.f : v;
  return lo > 1.f ? 1.f : lo;
}

// torchvision _blend(img1, img2, ratio) = (ratio*img1 + (1-ratio)*img2).clamp(0, 1), the Python
// scalars rounded to float32 as LibTorch does for a float tensor.
SOCO_INLINE float Blend(float a, float b, float fa, float fb) { return Clamp01(fa * a + fb * b); }

// rgb_to_grayscale: 0.2989 r + 0.587 g + 0.114 b, in that order.
SOCO_INLINE float Gray(float r, float g, float b) { return (0.2989f * r + 0.587f * g) + 0.114f * b; }

SOCO_INLINE void AdjustBrightness(float* R, float* G, float* B, size_t n, double f) {
  const float fa = float(f);  // _blend with zeros: (1-f)*0 adds nothing
  for (size_t i = 0; i < n; i++) {
    R[i] = Clamp01(fa * R[i]);
    G[i] = Clamp01(fa * G[i]);
    B[i] = Clamp01(fa * B[i]);
  }
}

SOCO_INLINE void AdjustContrast(float* R, float* G, float* B, size_t n, double f) {
  double sum = 0;  // torch.mean of the grayscale image (a float32 value)
  for (size_t i = 0; i < n; i++) sum += Gray(R[i], G[i], B[i]);
  const float mean = float(sum / double(n));
  const float fa = float(f), fb = float(1.0 - f);
  const float m = fb * mean;
  for (size_t i = 0; i < n; i++) {
    R[i] = Clamp01(fa * R[i] + m);
    G[i] = Clamp01(fa * G[i] + m);
    B[i] = Clamp01(fa * B[i] + m);
  }
}

SOCO_INLINE void AdjustSaturation(float* R, float* G, float* B, size_t n, double f) {
  const float fa = float(f), fb = float(1.0 - f);
  for (size_t i = 0; i < n; i++) {
    const float g = Gray(R[i], G[i], B[i]);
    R[i] = Blend(R[i], g, fa, fb);
    G[i] = Blend(G[i], g, fa, fb);
    B[i] = Blend(B[i], g, fa, fb);
  }
}

// fmod(x, 1) for |x| < 2 (all the hue needs): the fraction, exactly (x -+ 1 is exact there).
SOCO_INLINE float Frac(float x) {
  const float a = x >= 1.f ? x - 1.f : x;
  return a <= -1.f ? a + 1.f : a;
}

// torchvision _rgb2hsv, h = (h + f) % 1.0 (torch.remainder), _hsv2rgb.
SOCO_INLINE void AdjustHue(float* __restrict R, float* __restrict G, float* __restrict B, size_t n, double factor) {
  const float hf = float(factor);
  for (size_t i = 0; i < n; i++) {
    // Every value computed unconditionally, then selected: branch-free, so it vectorises.
    const float r = R[i], g = G[i], b = B[i];
    const float mx = r > g ? r : g, maxc = mx > b ? mx : b;
    const float mn = r < g ? r : g, minc = mn < b ? mn : b;
    const float cr = maxc - minc;
    const float s = cr / (maxc == minc ? 1.f : maxc);
    const float crd = maxc == minc ? 1.f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    // hr + hg + hb of torchvision: one of them is the masked value, the others are 0.
    const float num = maxc == r ? bc - gc : maxc == g ? (2.f + rc) - bc : (4.f + gc) - rc;
    const float h0 = Frac(num / 6.f + 1.f);
    const float h1 = Frac(h0 + hf);
    const float h = h1 < 0.f ? h1 + 1.f : h1;  // remainder takes the divisor's sign
    const float h6 = h * 6.f;
    const float fl = float(int(h6));  // floor: h6 >= 0
    const float fr = h6 - fl;
    const float sector = fl >= 6.f ? 0.f : fl;  // i % 6
    const float v = maxc;
    const float p = Clamp01(v * (1.f - s));
    const float q = Clamp01(v * (1.f - s * fr));
    const float t = Clamp01(v * (1.f - s * (1.f - fr)));
    // _hsv2rgb's table: r = (v, q, p, p, t, v), g = (t, v, v, q, p, p), b = (p, p, t, v, v, q).
    const float r4 = sector == 4.f ? t : p, r1 = sector == 1.f ? q : r4;
    const float r5 = sector == 5.f ? v : r1;
    R[i] = sector == 0.f ? v : r5;
    const float g3 = sector == 3.f ? q : p, g2 = sector <= 2.f ? v : g3;
    G[i] = sector == 0.f ? t : g2;
    const float b4 = sector <= 4.f ? v : q, b2 = sector == 2.f ? t : b4;
    B[i] = sector <= 1.f ? p : b2;
  }
}

SOCO_INLINE void Grayscale(float* R, float* G, float* B, size_t n) {
  for (size_t i = 0; i < n; i++) R[i] = G[i] = B[i] = Gray(R[i], G[i], B[i]);
}

SOCO_INLINE int Reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

// dst[x] = sum over taps j in [lo, hi) of k[j] * src(j)[x], j ascending. Blocks of 16 outputs
// are summed in vector registers: one load per tap and vector, one store per block.
template <class Src>
SOCO_INLINE void AccumulateTaps(float* __restrict dst, int w, const float* k, int lo, int hi, Src src) {
  int x0 = 0;
#if defined(__GNUC__) || defined(__clang__)
  typedef float Vec8 __attribute__((vector_size(32)));
  for (; x0 + 16 <= w; x0 += 16) {
    Vec8 a0 = {}, a1 = {};
    for (int j = lo; j < hi; j++) {
      const Vec8 kj = Vec8{} + k[j];
      const float* s = src(j) + x0;
      Vec8 v0, v1;
      std::memcpy(&v0, s, sizeof v0);
      std::memcpy(&v1, s + 8, sizeof v1);
      a0 += kj * v0;
      a1 += kj * v1;
    }
    std::memcpy(dst + x0, &a0, sizeof a0);
    std::memcpy(dst + x0 + 8, &a1, sizeof a1);
  }
#endif
  for (int x = x0; x < w; x++) dst[x] = 0.f;
  for (int j = lo; j < hi; j++) {
    const float kj = k[j];
    const float* __restrict s = src(j);
    for (int x = x0; x < w; x++) dst[x] += kj * s[x];
  }
}

// torchvision gaussian_blur (reflect padding, the 2-D kernel = outer product of the 1-D one) as
// a horizontal then a vertical pass. Outer taps below 2^-24 are skipped: on pixels in [0, 1] each
// moves the sum by less than half a float32 ulp of 1 (all of them together by < 2e-6, against
// the tests' 1/255); for small sigmas that is most of the 23 taps.
SOCO_INLINE void Blur(float* plane, int h, int w, const float* k, int ksize, std::vector<float>& row,
          std::vector<float>& tmp) {
  constexpr float kNegligible = 1.f / (1 << 24);
  int lo = 0, hi = ksize;
  while (lo < hi && k[lo] < kNegligible) lo++;
  while (hi > lo && k[hi - 1] < kNegligible) hi--;
  const int half = (ksize - 1) / 2;
  const int r0 = lo - half, r1 = hi - 1 - half;  // tap offsets in use
  const int pad = std::max(-r0, r1);
  row.resize(size_t(w) + 2 * pad);
  tmp.resize(size_t(w) * h);
  for (int y = 0; y < h; y++) {
    const float* src = plane + size_t(y) * w;
    float* r = row.data() + pad;
    std::memcpy(r, src, sizeof(float) * w);
    for (int x = 1; x <= pad; x++) {
      r[-x] = src[x];
      r[w - 1 + x] = src[w - 1 - x];
    }
    AccumulateTaps(&tmp[size_t(y) * w], w, k, lo, hi, [&](int j) { return &row[pad + j - half]; });
  }
  for (int y = 0; y < h; y++)
    AccumulateTaps(plane + size_t(y) * w, w, k, lo, hi, [&](int j) { return &tmp[size_t(Reflect(y + j - half, h)) * w]; });
}

SOCO_INLINE void AugmentImage(float* img, int h, int w, const double* p, const float* kernel,
                  const AugmentConfig& cfg, std::vector<float>& row, std::vector<float>& tmp) {
  const size_t n = size_t(h) * w;
  float* R = img;
  float* G = img + n;
  float* B = img + 2 * n;
  if (p[kFlip] != 0) {
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < h; y++) {
        float* r = img + c * n + size_t(y) * w;
        std::reverse(r, r + w);
      }
  }
  if (p[kJitter] != 0) {
    for (int k = kOrder0; k <= kOrder3; k++) {
      switch (int(p[k])) {
        case 0: AdjustBrightness(R, G, B, n, p[kBrightness]); break;
        case 1: AdjustContrast(R, G, B, n, p[kContrast]); break;
        case 2: AdjustSaturation(R, G, B, n, p[kSaturation]); break;
        case 3: AdjustHue(R, G, B, n, p[kHue]); break;
        default: break;  // switched off (zero range)
      }
    }
  }
  if (p[kGrayscale] != 0) Grayscale(R, G, B, n);
  if (p[kBlur] != 0)
    for (int c = 0; c < 3; c++) Blur(img + c * n, h, w, kernel, cfg.kernelSize, row, tmp);
  if (p[kSolarize] != 0) {
    const float th = cfg.threshold;
    for (size_t i = 0; i < 3 * n; i++) {
      const float v = img[i], inv = 1.f - v;
      img[i] = v >= th ? inv : v;
    }
  }
  if (cfg.normalize) {  // torchvision normalize: sub_(mean).div_(std)
    for (int c = 0; c < 3; c++) {
      float* pl = img + c * n;
      const float m = cfg.mean[c], s = cfg.std[c];
      for (size_t i = 0; i < n; i++) pl[i] = (pl[i] - m) / s;
    }
  }
}

#define SOCO_AUGMENT_BATCH_BODY                                                                    \
  std::vector<float> row, tmp;                                                                     \
  for (int i = 0; i < count; i++)                                                                  \
    AugmentImage(data + size_t(i) * 3 * h * w, h, w, params + size_t(i) * kAugRecord,            \
                 cfg.kernels ? cfg.kernels + size_t(i) * cfg.kernelSize : nullptr, cfg, row, tmp);

#if SOCO_X86_DISPATCH
// The same code compiled for AVX2 + FMA (8 floats a step, fused multiply-adds: float rounding
// differs from the SSE2 build by ~1 ulp), taken when the CPU has them, as LibTorch does.
__attribute__((target("avx2,fma"))) void AugmentBatchAvx2(float* data, int count, int h, int w,
                                                          const double* params, const AugmentConfig& cfg) {
  SOCO_AUGMENT_BATCH_BODY
}
#endif

void AugmentBatch(float* data, int count, int h, int w, const double* params,
                  const AugmentConfig& cfg) {
#if SOCO_X86_DISPATCH
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    AugmentBatchAvx2(data, count, h, w, params, cfg);
    return;
  }
#endif
  SOCO_AUGMENT_BATCH_BODY
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace soco_image

#ifndef SOCO_IMAGE_CORE_ONLY

namespace soco_image {

// Decoded pixel buffers that JS holds (decodeImage's `data`), by address: a tensor made from one
// shares it instead of copying it (native/tensor.cc fromDecoded, lib/data/views.ts rgbTensor).
// Every owner holds a shared_ptr (the ArrayBuffer, each tensor); the last one to let go, on any
// thread, unregisters the address before the memory is freed, so an address in the map is
// always the live buffer that was registered under it.
namespace {
std::mutex pixels_mutex;
std::unordered_map<const void*, std::weak_ptr<Bytes>> pixels;
}  // namespace

std::shared_ptr<Bytes> RegisterPixels(Bytes&& rgb) {
  std::shared_ptr<Bytes> p(new Bytes(std::move(rgb)), [](Bytes* b) {
    {
      std::lock_guard<std::mutex> lock(pixels_mutex);
      pixels.erase(b->data());
    }
    delete b;
  });
  std::lock_guard<std::mutex> lock(pixels_mutex);
  pixels[p->data()] = p;
  return p;
}

// The decoded buffer that starts at `data` and holds exactly `bytes`, shared, or null.
std::shared_ptr<void> SharedPixels(const void* data, size_t bytes) {
  std::lock_guard<std::mutex> lock(pixels_mutex);
  auto it = pixels.find(data);
  if (it == pixels.end()) return nullptr;
  std::shared_ptr<Bytes> p = it->second.lock();
  if (!p || p->size() != bytes) return nullptr;
  return p;
}

}  // namespace soco_image

namespace {

using namespace soco_image;

// One decode: runs on a DecodePool thread, then settles its promise on the JS thread through a
// thread-safe function of its own (which, like a pending AsyncWorker, keeps the event loop alive).
class DecodeJob {
 public:
  DecodeJob(Napi::Env env, std::string name, std::string path, Bytes bytes, Options opt)
      : deferred_(Napi::Promise::Deferred::New(env)),
        name_(std::move(name)),
        path_(std::move(path)),
        bytes_(std::move(bytes)),
        opt_(opt) {
    napi_value resource = Napi::String::New(env, "soco:decodeImage");
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_threadsafe_function(env, nullptr, nullptr, resource, 0, 1, nullptr, nullptr,
                                                                   nullptr, Settle, &tsfn_));
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Pool thread: decode, then hand the job to the JS thread (which deletes it).
  void Run() {
    Execute();
    napi_threadsafe_function tsfn = tsfn_;  // the JS thread may delete this job as soon as it is queued
    // Not queued: the environment is shutting down and nobody waits for the result.
    if (napi_call_threadsafe_function(tsfn, this, napi_tsfn_blocking) != napi_ok) delete this;
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  }

 private:
  void Execute() {
    try {
      if (!path_.empty()) {
        // Each pool thread reads into its own buffer, kept between images: no allocation and
        // no page faults per file, and the destination is warm in cache.
        thread_local Bytes file;
        KeepBounded keep{file};
        ReadFileInto(path_, file);
        Decode(file.data(), file.size(), opt_, image_);
      } else {
        Decode(bytes_.data(), bytes_.size(), opt_, image_);
      }
    } catch (const DecodeError& e) {
      reason_ = ReasonCode(e.reason);
      error_ = name_ + ": " + e.what();
    } catch (const std::bad_alloc&) {
      reason_ = "IMAGE_TOO_LARGE";
      error_ = name_ + ": out of memory while decoding";
    } catch (const std::exception& e) {
      reason_ = "IMAGE_ERROR";
      error_ = name_ + ": " + e.what();
    }
    Bytes().swap(bytes_);  // free the encoded bytes on the pool thread
  }

  // JS thread (env null: the environment is being torn down, only free the job).
  static void Settle(napi_env env, napi_value, void*, void* data) {
    std::unique_ptr<DecodeJob> job(static_cast<DecodeJob*>(data));
    if (env == nullptr) return;
    Napi::Env e(env);
    try {
      if (job->reason_.empty()) {
        job->deferred_.Resolve(job->Result(e));
      } else {
        Napi::Error err = Napi::Error::New(e, job->error_);
        err.Set("code", job->reason_);
        err.Set("file", job->name_);
        job->deferred_.Reject(err.Value());
      }
    } catch (const Napi::Error& err) {
      job->deferred_.Reject(err.Value());
    }
  }

  Napi::Object Result(Napi::Env env) {
    Napi::Object r = Napi::Object::New(env);
    if (!opt_.headerOnly) {
      const size_t bytes = image_.rgb.size();
      r.Set("data", Napi::Uint8Array::New(env, bytes, PixelBuffer(env), 0));
      r.Set("width", image_.width);
      r.Set("height", image_.height);
      r.Set("originalWidth", image_.originalWidth);
      r.Set("originalHeight", image_.originalHeight);
    } else {
      r.Set("width", image_.originalWidth);
      r.Set("height", image_.originalHeight);
    }
    r.Set("format", FormatName(image_.format));
    return r;
  }

  // The decoded pixels handed to JS without a copy (the ArrayBuffer shares them and drops its
  // share when collected) and registered, so that a tensor can share them too (SharedPixels);
  // runtimes that refuse external buffers (Electron) get a V8-owned copy.
  Napi::ArrayBuffer PixelBuffer(Napi::Env env) {
    if (image_.rgb.empty()) return Napi::ArrayBuffer::New(env, 0);
    auto* owned = new std::shared_ptr<Bytes>(RegisterPixels(std::move(image_.rgb)));
    napi_value ab;
    const napi_status st = napi_create_external_arraybuffer(
        env, (*owned)->data(), (*owned)->size(),
        [](napi_env, void*, void* hint) { delete static_cast<std::shared_ptr<Bytes>*>(hint); }, owned, &ab);
    if (st == napi_ok) return Napi::ArrayBuffer(env, ab);
    Napi::ArrayBuffer copy = Napi::ArrayBuffer::New(env, (*owned)->size());
    std::memcpy(copy.Data(), (*owned)->data(), (*owned)->size());
    delete owned;
    return copy;
  }

  Napi::Promise::Deferred deferred_;
  napi_threadsafe_function tsfn_ = nullptr;
  std::string name_, path_;
  Bytes bytes_;
  Options opt_;
  Image image_;
  std::string reason_, error_;
};

// The decode threads, shared by every loader of the process. Not libuv's pool: that one has
// UV_THREADPOOL_SIZE threads (4 by default), fixed at its first use and shared with Node's file
// and DNS work, so `train --workers 64` could not decode 64 images at once. Here exactly `limit`
// jobs run at once (thread k works only while k < limit), and the limit can change at any time.
class DecodePool {
 public:
  static DecodePool& Instance() {
    static DecodePool* pool = new DecodePool();  // never destroyed: its detached threads outlive static destructors
    return *pool;
  }

  void SetLimit(int n) {
    std::lock_guard<std::mutex> lock(m_);
    limit_ = n;
    for (; started_ < limit_; started_++) std::thread([this, k = started_] { Work(k); }).detach();
    cv_.notify_all();
  }

  int Limit() {
    std::lock_guard<std::mutex> lock(m_);
    return limit_;
  }

  void Submit(DecodeJob* job) {
    std::lock_guard<std::mutex> lock(m_);
    queue_.push_back(job);
    cv_.notify_all();  // notify_one could wake a thread above the limit, which would sleep on
  }

 private:
  DecodePool() { SetLimit(4); }

  void Work(int k) {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return k < limit_ && !queue_.empty(); });
      DecodeJob* job = queue_.front();
      queue_.pop_front();
      lock.unlock();
      job->Run();
      lock.lock();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<DecodeJob*> queue_;
  int limit_ = 0, started_ = 0;
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

// glibc returns freed memory above its mmap threshold (128 KB to start) to the OS, so every
// image-sized buffer (encoded file, pixels, the tensor they are copied into) is page-faulted in
// again, in the kernel (measured: ~15% of the loader's host time). Freeing one 30 MB mmap()ed
// block raises the threshold to 30 MB for the rest of the process (glibc's dynamic threshold,
// as lib/data/augment.ts does for the CPU augmentations); elsewhere a harmless allocation.
void RaiseMmapThreshold() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* volatile block = std::malloc(size_t(30) << 20);
    std::free(block);
  });
}

// decodeImage(source: string | Uint8Array, opts?: {minWidth, minHeight, width, height}, headerOnly)
Napi::Value DecodeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RaiseMmapThreshold();
  std::string name, path;
  Bytes bytes;
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
  auto* job = new DecodeJob(env, std::move(name), std::move(path), std::move(bytes), opt);
  Napi::Promise p = job->Promise();
  DecodePool::Instance().Submit(job);  // the job deletes itself once settled
  return p;
}

// decodeThreads(n?) -> the number of images decoded at once, after setting it to n when given.
Napi::Value DecodeThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() >= 1 && !info[0].IsUndefined()) {
    const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(n >= 1 && n <= 1024) || n != std::floor(n))
      throw Napi::RangeError::New(env, "decodeThreads: the thread count must be an integer in [1, 1024]");
    DecodePool::Instance().SetLimit(int(n));
  }
  return Napi::Number::New(env, DecodePool::Instance().Limit());
}

// augmentImages(data: Float32Array [n,3,h,w], n, h, w, params: Float64Array [n*kAugRecord],
//   kernels: Float32Array [n*kernelSize] | null, kernelSize, threshold, norm: Float32Array
//   [mean0..2, std0..2] | null): augments data in place (lib/data/augment.ts checks the values).
Napi::Value AugmentImages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto typed = [&](int i, napi_typedarray_type type, const char* what) {
    if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type)
      throw Napi::TypeError::New(env, std::string("augmentImages: ") + what + " has the wrong array type");
    return info[i].As<Napi::TypedArray>();
  };
  auto integer = [&](int i, const char* what) {
    const double d = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 1e9) || d != std::floor(d))
      throw Napi::RangeError::New(env, std::string("augmentImages: ") + what + " must be a non-negative integer");
    return int(d);
  };
  if (info.Length() < 9) throw Napi::TypeError::New(env, "augmentImages: 9 arguments expected");
  Napi::TypedArray data = typed(0, napi_float32_array, "data");
  const int n = integer(1, "n"), h = integer(2, "h"), w = integer(3, "w");
  Napi::TypedArray params = typed(4, napi_float64_array, "params");
  AugmentConfig cfg;
  cfg.kernelSize = integer(6, "kernelSize");
  if (data.ElementLength() != size_t(n) * 3 * h * w)
    throw Napi::RangeError::New(env, "augmentImages: data does not hold n*3*h*w floats");
  if (params.ElementLength() != size_t(n) * kAugRecord)
    throw Napi::RangeError::New(env, "augmentImages: params must hold " + std::to_string(kAugRecord) + " numbers per image");
  if (!info[5].IsNull()) {
    Napi::TypedArray k = typed(5, napi_float32_array, "kernels");
    if (k.ElementLength() != size_t(n) * cfg.kernelSize || cfg.kernelSize % 2 != 1 ||
        (cfg.kernelSize - 1) / 2 >= std::min(h, w))
      throw Napi::RangeError::New(env, "augmentImages: kernels must hold n odd kernels smaller than the images");
    cfg.kernels = reinterpret_cast<const float*>(static_cast<const uint8_t*>(k.ArrayBuffer().Data()) + k.ByteOffset());
  }
  cfg.threshold = float(info[7].As<Napi::Number>().DoubleValue());
  if (!info[8].IsNull()) {
    Napi::TypedArray m = typed(8, napi_float32_array, "norm");
    if (m.ElementLength() != 6) throw Napi::RangeError::New(env, "augmentImages: norm must hold 3 means and 3 stds");
    const float* v = reinterpret_cast<const float*>(static_cast<const uint8_t*>(m.ArrayBuffer().Data()) + m.ByteOffset());
    cfg.normalize = true;
    for (int c = 0; c < 3; c++) {
      cfg.mean[c] = v[c];
      cfg.std[c] = v[3 + c];
    }
  }
  const double* p = reinterpret_cast<const double*>(static_cast<const uint8_t*>(params.ArrayBuffer().Data()) + params.ByteOffset());
  for (int i = 0; i < n; i++)
    if (p[size_t(i) * kAugRecord + kBlur] != 0 && !cfg.kernels)
      throw Napi::RangeError::New(env, "augmentImages: an image is blurred but no kernels were given");
  float* d = reinterpret_cast<float*>(static_cast<uint8_t*>(data.ArrayBuffer().Data()) + data.ByteOffset());
  AugmentBatch(d, n, h, w, p, cfg);
  return env.Undefined();
}

}  // namespace

namespace soco {
void InitImage(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeImage", Napi::Function::New(env, DecodeImage, "decodeImage"));
  exports.Set("augmentImages", Napi::Function::New(env, AugmentImages, "augmentImages"));
  exports.Set("decodeThreads", Napi::Function::New(env, DecodeThreads, "decodeThreads"));
  // The codec libraries' versions, for `soco-train env` (libjpeg-turbo's is compile-time only).
  Napi::Object codecs = Napi::Object::New(env);
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
  codecs.Set("libjpeg-turbo", std::to_string(LIBJPEG_TURBO_VERSION_NUMBER / 1000000) + "." +
                                  std::to_string(LIBJPEG_TURBO_VERSION_NUMBER / 1000 % 1000) + "." +
                                  std::to_string(LIBJPEG_TURBO_VERSION_NUMBER % 1000));
#endif
  codecs.Set("libpng", png_get_libpng_ver(nullptr));
  int webp = WebPGetDecoderVersion();
  codecs.Set("libwebp", std::to_string(webp >> 16) + "." + std::to_string((webp >> 8) & 0xff) + "." + std::to_string(webp & 0xff));
  codecs.Set("libdeflate", LIBDEFLATE_VERSION_STRING);
  codecs.Set("zlib", zlibVersion());
  exports.Set("imageCodecs", codecs);
}
}  // namespace soco

#endif  // SOCO_IMAGE_CORE_ONLY
