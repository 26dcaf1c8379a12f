// strand-classify predict: class probabilities of every record.
process STRAND_CLASSIFY {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    // FASTA/FASTQ records, read from start to end: no index needed.
    tuple val(meta), path(sequences)
    val model

    output:
    tuple val(meta), path("${meta.id}.predictions.tsv"), emit: tsv
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    strand-classify predict \\
        -m ${model} \\
        -@ ${task.cpus} \\
        -q \\
        ${sequences} \\
        ${args} \\
        -o ${meta.id}.predictions.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        strand: \$(strand-classify --version | sed 's/^strand-classify //')
    END_VERSIONS
    """
}
