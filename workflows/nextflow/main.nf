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
    // A BGZF FASTA is read through its .gzi too; staged with it, or
    // nothing ([]) for a plain FASTA.
    def gzi   = params.reference.endsWith('.gz') ? file("${params.reference}.gzi", checkIfExists: true) : []
    def genome = [ id: fasta.simpleName ]

    // (a) embeddings, one task per shard
    shards = Channel.of(1..params.shards).map { i -> [ i, params.shards ] }
    STRAND_EMBED(Channel.value([ genome, fasta, fai, gzi ]), params.model, shards)

    // (b) variant scores per contig, plus one task ('') for the records on
    // contigs missing from the reference, merged in reference order
    if (params.vcf) {
        def vcf = file(params.vcf, checkIfExists: true)
        contigs = Channel.fromPath(fai).splitCsv(sep: '\t').map { row -> row[0] }.concat(Channel.of(''))
        STRAND_SCORE(
            contigs.map { c -> [ [ id: vcf.simpleName ], vcf, c ] },
            Channel.value([ fasta, fai, gzi ]),
            params.model
        )
        // Reference order: the .fai's order, kept by sorting on it; the
        // other contigs last.
        def order = fai.readLines().collect { it.split('\t')[0] }
        def rank = { c -> c ? order.indexOf(c) : order.size() }
        STRAND_CONCAT(
            STRAND_SCORE.out.vcf
                .toSortedList { a, b -> rank(a[1]) <=> rank(b[1]) }
                .map { parts -> [ parts[0][0], parts.collect { it[2] } ] }
        )
    }

    // (c) classifier predictions
    if (params.classify_fasta) {
        def seqs = file(params.classify_fasta, checkIfExists: true)
        STRAND_CLASSIFY(Channel.value([ [ id: seqs.simpleName ], seqs ]), params.classify_model)
    }
}
