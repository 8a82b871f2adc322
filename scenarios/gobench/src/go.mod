module archbench/gobench

go 1.19
