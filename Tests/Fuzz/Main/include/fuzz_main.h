// The entry point of funnel-fuzz under libFuzzer (see fuzz_main.c).
#pragma once
int funnel_fuzz_entry_point_present(void);
