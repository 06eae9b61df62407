#!/usr/bin/env python3
"""Writes a synthetic Ollama server log of N Gin access lines (one model, Poisson
arrivals with a 20 s mean gap) for the memory check of `kabench predict --ollama-log`
on a multi-GB input: python3 benches/gen_gin_log.py 22000000 /tmp/big-gin.log"""
import random, datetime, sys
random.seed(7)
n=int(sys.argv[1]); out=open(sys.argv[2],'w',buffering=1<<22)
t=datetime.datetime(2025,1,1)
w=out.write
for i in range(n):
    t+=datetime.timedelta(seconds=random.expovariate(1/20))
    lat=random.uniform(0.05,3.0)
    w(f"[GIN] {t:%Y/%m/%d - %H:%M:%S} | 200 | {lat:12.6f}s |      10.0.0.{i%200} | POST     \"/api/chat\"\n")
