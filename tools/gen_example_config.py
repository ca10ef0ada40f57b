#!/usr/bin/env python3
"""Writes citybrain.example.toml: the default config (from `citybrain check-config`) with every field's
doc comment from the Rust sources above it. Run from the repository root after changing a config struct:

    cargo build -p citybrain && python3 tools/gen_example_config.py

A test (tests/config_example.rs) checks the file parses and lists every default field."""
import re, subprocess, glob, sys

src = {}
for path in glob.glob('src/**/*.rs', recursive=True) + glob.glob('*/src/**/*.rs', recursive=True):
    src[path] = open(path, encoding='utf-8').read()

structs = {}  # name -> {field: (doc, type)}
for text in src.values():
    for m in re.finditer(r'pub struct (\w+)\s*\{(.*?)\n\}', text, re.S):
        name, body = m.group(1), m.group(2)
        fields, doc = {}, []
        for line in body.split('\n'):
            t = line.strip()
            if t.startswith('///'):
                doc.append(t[3:].strip())
            elif t.startswith('#['):
                continue
            else:
                fm = re.match(r'pub (\w+):\s*(.+?),?$', t)
                if fm:
                    fields[fm.group(1)] = (' '.join(doc), fm.group(2))
                doc = []
        structs.setdefault(name, fields)

def inner_type(ty):
    ty = ty.strip()
    m = re.match(r'Option<(.+)>$', ty)
    if m:
        ty = m.group(1)
    return ty.split('::')[-1].split('<')[0]

out = subprocess.run(['target/debug/citybrain', 'check-config'], capture_output=True, text=True, check=True).stdout
lines = [l for l in out.split('\n') if not l.startswith('# config OK')]

def struct_for(path):
    s = 'Config'
    for part in path:
        f = structs.get(s, {}).get(part)
        if not f:
            return None
        s = inner_type(f[1])
    return s

res = ['# CityBrain configuration: every option with its default and meaning.',
       '# Generated from the config structs by tools/gen_example_config.py; a test keeps it in step.',
       '# Shared settings at the top (data_dir, registry_path, [mqtt] host/port/credentials/TLS) are applied to',
       '# every part when run through `citybrain`: they override the per-part paths and broker fields below.', '']
table = []
for line in lines:
    t = line.strip()
    m = re.match(r'^\[+([^\]]+)\]+$', t)
    if m:
        table = m.group(1).split('.')
        owner = struct_for(table[:-1])
        doc = structs.get(owner or '', {}).get(table[-1], ('', ''))[0]
        res.append('')
        if doc:
            res.append(f'# {doc}')
        res.append(line)
        continue
    m = re.match(r'^(\w+)\s*=', t)
    if m:
        owner = struct_for(table)
        doc = structs.get(owner or '', {}).get(m.group(1), ('', ''))[0]
        if doc:
            res.append(f'# {doc}')
    res.append(line)
text = '\n'.join(res).rstrip() + '\n'
# Options that default to "unset" do not appear in the serialised defaults: show them commented out.
text = text.replace('data_dir = "citybrain-data"\n', 'data_dir = "citybrain-data"\n'
    '# Site registry file (default `registry.toml` inside `data_dir`; the demo\'s simulator writes it).\n'
    '# registry_path = "citybrain-data/registry.toml"\n', 1)
text = re.sub(r'\n{3,}', '\n\n', text)
open('citybrain.example.toml', 'w', encoding='utf-8').write(text)
print('wrote citybrain.example.toml', file=sys.stderr)
