// strand-score: the variants of one contig, as an indexed BGZF VCF.
process STRAND_SCORE {
    tag "${meta.id} ${contig}"
    label 'process_gpu'

    input:
    tuple val(meta), path(vcf), val(contig)
    tuple path(fasta), path(fai)
    val model

    output:
    tuple val(meta), val(contig), path("${meta.id}.${contig}.vcf.gz"), path("${meta.id}.${contig}.vcf.gz.tbi"), emit: vcf
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    strand-score \\
        -m ${model} \\
        -@ ${task.cpus} \\
        -q \\
        -f ${fasta} \\
        --vcf ${vcf} \\
        -r ${contig} \\
        ${args} \\
        -o ${meta.id}.${contig}.vcf.gz

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        strand: \$(strand-score --version | sed 's/^strand-score //')
    END_VERSIONS
    """
}
