# Short commands; the scripts in scripts/ do the work and can be called directly.
.PHONY: setup build up down status seed test bench clean demo

BUILD ?= build

setup:
	scripts/setup

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $$(nproc)

# The quick start: install, build, start the local stack, load the sample data, show it.
demo: build
	scripts/demo

up: build
	scripts/stack up

down:
	scripts/stack down

status:
	scripts/stack status

seed:
	scripts/seed

test:
	scripts/test

bench: build
	bench/run

clean:
	rm -rf build build-asan build-rel
