#!/usr/bin/env python3
"""gen-sim-default.py: rewrites configs/sim-default.ini from include/sprint/keys_hardware.def (every
simulator key at its default, with its doc, unit and source as comments), keeping the file's
header comment. Run after changing a default: scripts/gen-sim-default.py"""
import re, textwrap

SRC = "include/sprint/keys_hardware.def"
DST = "configs/sim-default.ini"
PAT = re.compile(r'SP_CFG\((\w+), (\w+), (\w+), ([^,]+), ([^,]+), "([^"]*)", (NULL|"[^"]*"), "([^"]*)", '
                 r'"((?:[^"\\]|\\.)*)", "((?:[^"\\]|\\.)*)"\)')


def wrap(prefix, text):
    return "\n".join(textwrap.wrap(text, width=110, break_on_hyphens=False, initial_indent="; " + prefix,
                                   subsequent_indent=";   "))


def main():
    old = open(DST).read()
    out = [old[:old.index("[workload]")].rstrip("\n") + "\n"]
    cur = None
    for m in PAT.finditer(open(SRC).read()):
        sec, key, _typ, _mn, _mx, dflt, choices, unit, doc, source = m.groups()
        if sec != cur:
            out.append("\n[%s]\n" % sec)
            cur = sec
        d = doc + " [%s]" % unit
        if choices != "NULL":
            d += " choices: " + choices.strip('"')
        out.append(wrap("", d) + "\n" + wrap("source: ", source) + "\n%s = %s\n" % (key, dflt))
    open(DST, "w").write("".join(out))


if __name__ == "__main__":
    main()
