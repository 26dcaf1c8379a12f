#!/usr/bin/env nextflow
// strand on a genome, wired like workflows/snakemake: embeddings by shard,
// variant scores by contig merged into one indexed VCF, classifier
// predictions.
//
//   nextflow run main.nf -profile slurm --reference hg38.fa.gz --model DIR|ID \
//       --vcf calls.vcf.gz --shards 24 --classify_model DIR --classify_fasta seqs.fa

nextflow.enable.dsl = 2

include { STRAND_EMBED    } from './modules/strand/embed/main'
include { STRAND_SCORE    } from './modules/strand/score/main'
include { STRAND_CONCAT   } from './modules/strand/concat/main'
include { STRAND_CLASSIFY } from './modules/strand/classify/main'

params.reference      = null
params.model          = null
params.vcf            = null
params.shards         = 8
params.classify_model = null
params.classify_fasta = null
params.outdir         = 'results'

workflow {
    if (!params.reference || !params.model) {
        error "give --reference (indexed FASTA) and --model"
    }
    def fasta = file(params.reference, checkIfExists: true)
    def fai   = file("${params.reference}.fai", checkIfExists: true)
    def genome = [ id: fasta.simpleName ]

    // (a) embeddings, one task per shard
    shards = Channel.of(1..params.shards).map { i -> [ i, params.shards ] }
    STRAND_EMBED(Channel.value([ genome, fasta, fai ]), params.model, shards)

    // (b) variant scores per contig, merged in reference order
    if (params.vcf) {
        def vcf = file(params.vcf, checkIfExists: true)
        contigs = Channel.fromPath(fai).splitCsv(sep: '\t').map { row -> row[0] }
        STRAND_SCORE(
            contigs.map { c -> [ [ id: vcf.simpleName ], vcf, c ] },
            Channel.value([ fasta, fai ]),
            params.model
        )
        // Reference order: the .fai's order, kept by sorting on it.
        def order = fai.readLines().collect { it.split('\t')[0] }
        STRAND_CONCAT(
            STRAND_SCORE.out.vcf
                .toSortedList { a, b -> order.indexOf(a[1]) <=> order.indexOf(b[1]) }
                .map { parts -> [ parts[0][0], parts.collect { it[2] } ] }
        )
    }

    // (c) classifier predictions
    if (params.classify_fasta) {
        def seqs = file(params.classify_fasta, checkIfExists: true)
        STRAND_CLASSIFY(Channel.value([ [ id: seqs.simpleName ], seqs ]), params.classify_model)
    }
}
