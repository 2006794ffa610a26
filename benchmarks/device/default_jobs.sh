# Sourced by gpu_rows.sh (the jobs it runs unless JOBS is set) and fetch_wheels.sh (the rows whose semantic-ID
# cache entries it stages). Needs MAX_MIN. One job per line: "GROUP ROW [leaderboard arguments]".
# main: the leaderboard, every default row. cold: the cold-start columns, each model trained once on the
# cold-start split (--cold_start_mode=shared). k4096: a tuning run (4096 codes per aspect), its own table.
# cli: the user's command on the GPU through RecBole's distributed engine (--nproc=1 --world_size=1: one rank, nccl), two epochs.
# TIGER gets one more minute: it is the slowest to train and the one row the CPU machine cannot run at all.
DEFAULT_JOBS="main TIGER --max_minutes=$((MAX_MIN + 1))
main LAMIA
main SASRec
main BERT4Rec
main GRU4Rec
main FDSA
main LAMIA-no-recon
main LAMIA-no-contrastive
main LAMIA-rqvae
main LAMIA-sentence
cold LAMIA --cold_start_ratio=0.05 --cold_start_mode=shared
cold SASRec --cold_start_ratio=0.05 --cold_start_mode=shared
cold FDSA --cold_start_ratio=0.05 --cold_start_mode=shared
cold TIGER --cold_start_ratio=0.05 --cold_start_mode=shared --max_minutes=$((MAX_MIN + 1))
k4096 LAMIA --set LAMIA:codebook_size=4096
cli LAMIA --nproc=1 --world_size=1 --epochs=2"
