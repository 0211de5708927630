#!/usr/bin/python3
"""Python side of test/serialize.test.ts (the lane's PyTorch: Debian's 1.13 or the torch 2.x venv).

  serialize_ref.py fixtures DIR      writes torch.save files into DIR; prints what they hold
  serialize_ref.py read [--weights-only] FILE...
                                     torch.load()s each FILE (our save() output); prints what it
                                     holds, its zip layout, and whether torch.save of the loaded
                                     object writes the same file (see difference_from_torch_save)

Values are described the same way on both sides: tensors by dtype, shape and the SHA-256 of their
contiguous little-endian bytes; floats by their IEEE-754 bits; ints as decimal strings.
"""
import collections
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

DTYPES = {torch.float32: 'float32', torch.float64: 'float64', torch.float16: 'float16',
          torch.bfloat16: 'bfloat16', torch.int64: 'int64', torch.int32: 'int32',
          torch.uint8: 'uint8', torch.bool: 'bool'}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous().reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)  # numpy has no bfloat16; the bits are what we compare
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.numpy().tobytes()


def desc(v):
    if isinstance(v, torch.Tensor):
        return {'tensor': DTYPES[v.dtype], 'shape': list(v.shape),
                'sha256': hashlib.sha256(tensor_bytes(v)).hexdigest(), 'requiresGrad': v.requires_grad}
    if isinstance(v, bool):
        return {'bool': v}
    if isinstance(v, int):
        return {'int': str(v)}
    if isinstance(v, float):
        return {'float': struct.pack('<d', v).hex()}
    if v is None:
        return None
    if isinstance(v, str):
        return {'str': v}
    if isinstance(v, dict):
        d = {'dict': [[desc(k), desc(x)] for k, x in v.items()]}
        if hasattr(v, '_metadata'):
            d['attrs'] = {'_metadata': desc(v._metadata)}
        return d
    if isinstance(v, list):
        return {'list': [desc(x) for x in v]}
    if isinstance(v, tuple):  # torch.Size too
        return {'tuple': [desc(x) for x in v]}
    raise TypeError(f'no description for {type(v)}')


TORCH_2 = int(torch.__version__.split('.')[0]) >= 2
# Records PyTorch 2.x's torch.save adds that its torch.load treats as optional (absent:
# format version 1, 64-byte alignment, no id); the id is random, so 2.x output is never byte-stable.
OPTIONAL_2X = {'.format_version', '.storage_alignment', '.data/serialization_id'}


def torch_save_bytes(obj):
    """torch.save(obj) into memory, with the byteorder record after data.pkl on 1.13 too (as 2.x)."""
    buf = io.BytesIO()
    if TORCH_2:
        torch.save(obj, buf)  # 2.x writes the byteorder record itself
        return buf.getvalue()
    with torch.serialization._open_zipfile_writer(buf) as writer:

        class WithByteorder:
            def write_record(self, name, data, size):
                writer.write_record(name, data, size)
                if name == 'data.pkl':
                    writer.write_record('byteorder', b'little', 6)

        torch.serialization._save(obj, WithByteorder(), pickle, 2)
    return buf.getvalue()


def records(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename.split('/', 1)[1], z.read(i)) for i in z.infolist()]


def difference_from_torch_save(ours, theirs):
    """None if our file is what torch.save writes: the same bytes (1.13), or (2.x) the same records
    with the same contents once 2.x's optional records are set aside, in the same order except
    among the storages: 1.13 writes those in string order of their keys (0, 1, 10, 2, ...), 2.x in
    numeric order; we write 1.13's, and both versions read records by name."""
    if ours == theirs:
        return None
    if not TORCH_2:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        return f'bytes differ from byte {at} ({len(ours)} bytes, torch.save {len(theirs)})'
    mine = records(ours)
    kept = [r for r in records(theirs) if r[0] not in OPTIONAL_2X]
    order = lambda recs: [n for n, _ in recs if not n.startswith('data/')]
    if order(mine) != order(kept) or sorted(n for n, _ in mine) != sorted(n for n, _ in kept):
        return f'records {[n for n, _ in mine]}, torch.save {[n for n, _ in kept]} (and {sorted(OPTIONAL_2X)})'
    theirs_by_name = dict(kept)
    return next((f'record {n} differs' for n, data in mine if data != theirs_by_name[n]), None)


def layout(path):
    """Each record: name, where its data starts, how it is stored (checked against PyTorch's rules)."""
    out = []
    with open(path, 'rb') as f, zipfile.ZipFile(path) as z:
        bad = z.testzip()  # reads every record, checks CRC-32
        for info in z.infolist():
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack('<HH', head[26:30])
            f.seek(info.header_offset + 30 + name_len)
            extra = f.read(extra_len)
            data_at = info.header_offset + 30 + name_len + extra_len
            out.append({'name': info.filename, 'dataOffset': data_at, 'size': info.file_size,
                        'method': info.compress_type, 'flags': info.flag_bits,
                        'localExtraIds': extra_ids(extra), 'centralExtraIds': extra_ids(info.extra)})
    return {'records': out, 'crcError': bad}


def extra_ids(extra):
    ids, p = [], 0
    while p + 4 <= len(extra):
        i, n = struct.unpack('<HH', extra[p:p + 4])
        ids.append(i)
        p += 4 + n
    return ids


def read(args):
    weights_only = args[0] == '--weights-only'
    files = args[1:] if weights_only else args
    result = {}
    for path in files:
        obj = torch.load(path, weights_only=weights_only)
        with open(path, 'rb') as f:
            ours = f.read()
        result[path] = {'value': desc(obj), 'layout': layout(path),
                        'differenceFromTorchSave': difference_from_torch_save(ours, torch_save_bytes(obj))}
    json.dump(result, sys.stdout)


def random_tensor(g, dtype, shape):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if dtype in (torch.int32, torch.int64):
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max, shape, generator=g, dtype=dtype)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 1e3).to(dtype)


def fixtures(out):
    import torchvision

    expected = {}

    torch.manual_seed(0)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(sd, os.path.join(out, 'resnet18.pt'))
    expected['resnet18.pt'] = desc(sd)

    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 5, generator=g)
    alone = torch.randn(4, 6, generator=g)
    mixed = collections.OrderedDict([
        ('dtypes', {name: random_tensor(g, dt, (3, 4)) for dt, name in DTYPES.items()}),
        ('zero_dim', {name: random_tensor(g, dt, ()) for dt, name in DTYPES.items()}),
        ('empty', torch.empty(0, 3)),
        # Several tensors over one storage: views with offsets, strides, a transpose, a step.
        ('views', {'base': base, 'row': base[2], 'col': base[:, 1], 't': base.t(), 'block': base[1:4, 2:5],
                   'step': base[::2, ::3], 'flat': base.view(-1)[7:20], 'row_again': base[2]}),
        ('alone_transposed', alone.t()),           # only a view saved: its storage is larger
        ('expanded', torch.randn(3, 1, generator=g).expand(3, 4)),  # stride 0
        ('param', torch.nn.Parameter(torch.randn(2, 2, generator=g))),
        ('size', torch.Size([2, 3])),
        ('scalars', {'int': 5, 'neg': -70000, 'big': 2 ** 70, 'negbig': -2 ** 65, 'float': 0.1, 'fint': 2.0,
                     'nan': float('nan'), 'inf': float('-inf'), 'true': True, 'false': False, 'none': None,
                     'str': 'h\u00e9llo \u2713', 'empty_str': '', 'max_safe': 2 ** 53 - 1, 'above_safe': 2 ** 53 + 1}),
        ('nested', [1, (2, 3.5), [torch.arange(3)], {'k': 'v'}, ()]),
        ('int_keys', {0: 'a', 7: 'b'}),
    ])
    torch.save(mixed, os.path.join(out, 'mixed.pt'))
    expected['mixed.pt'] = desc(mixed)
    # Views share their storage after loading: an in-place change to one shows in the others.
    again = torch.load(os.path.join(out, 'mixed.pt'))
    again['views']['row'].add_(1)
    expected['mixed.pt:after_row_add'] = desc(again['views'])

    # The same object at pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE).
    torch.save(mixed, os.path.join(out, 'proto4.pt'), pickle_protocol=4)
    expected['proto4.pt'] = desc(mixed)

    # The same file with every record deflated (a re-zipped checkpoint); torch.load reads it too.
    with zipfile.ZipFile(os.path.join(out, 'mixed.pt')) as src, \
            zipfile.ZipFile(os.path.join(out, 'deflated.pt'), 'w', zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    expected['deflated.pt'] = desc(torch.load(os.path.join(out, 'deflated.pt')))

    # A big-endian machine's file (PyTorch >= 2.1 writes byteorder "big" and swapped storages).
    be = {'f': torch.randn(5, generator=g), 'h': torch.randn(3, generator=g).half(), 'l': torch.arange(-2, 2)}
    torch.save(be, os.path.join(out, 'little.pt'))
    with zipfile.ZipFile(os.path.join(out, 'little.pt')) as src, \
            zipfile.ZipFile(os.path.join(out, 'bigendian.pt'), 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            name = info.filename.replace('little/', 'archive/')
            if name.endswith('/byteorder'):  # 2.x's own "little" record: replaced below
                continue
            if '/data/' in name:
                key = name.rsplit('/', 1)[1]
                item = [4, 2, 8][int(key)]  # storages keyed in the order f, h, l
                data = b''.join(data[i:i + item][::-1] for i in range(0, len(data), item))
            dst.writestr(name, data)
            if name.endswith('data.pkl'):
                dst.writestr('archive/byteorder', b'big')
    expected['bigendian.pt'] = desc(be)

    with zipfile.ZipFile(os.path.join(out, 'little.pt')) as src, \
            zipfile.ZipFile(os.path.join(out, 'missing_record.pt'), 'w') as dst:
        for info in src.infolist():
            if info.filename != 'little/data/1':
                dst.writestr(info.filename, src.read(info.filename))
    torch.save({'w': torch.ones(2)}, os.path.join(out, 'legacy.pt'), _use_new_zipfile_serialization=False)
    torch.save({'f': os.getcwd}, os.path.join(out, 'global.pt'))  # pickles GLOBAL posix.getcwd
    torch.save({'x': torch.zeros(2, dtype=torch.int16)}, os.path.join(out, 'int16.pt'))
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(out, 'jit.pt'))
    with zipfile.ZipFile(os.path.join(out, 'plain.zip'), 'w') as z:
        z.writestr('notes/readme.txt', 'not a checkpoint')
    with open(os.path.join(out, 'plain.pkl'), 'wb') as f:
        pickle.dump({'a': 1}, f, protocol=2)
    json.dump(expected, sys.stdout)


if __name__ == '__main__':
    if sys.argv[1] == 'fixtures':
        fixtures(sys.argv[2])
    elif sys.argv[1] == 'read':
        read(sys.argv[2:])
    else:
        sys.exit(f'unknown command {sys.argv[1]}')
